//! `sprintf` as OPA has it: Go's `fmt.Sprintf` over the arguments converted
//! the way OPA's builtin converts them (integers to int, other numbers to
//! float64, strings to string, anything else to its Rego text).
//!
//! regorus 0.14.1's own sprintf prints every float through `%g` in
//! scientific notation (`%.6g` of 0.6 gives "6e-1"; OPA gives "0.6") and
//! errors where Go prints `%!verb(...)`. It is replaced by this one through
//! regorus's extension mechanism (an extension named `sprintf` is found before
//! the builtin of that name).

use std::fmt::Write;

use anyhow::{bail, Result};
use regorus::Value;

/// One argument as Go's fmt sees it.
enum Arg {
    Int(i128),
    BigInt(String),
    Float(f64),
    Str(String),
}

impl Arg {
    fn from(value: &Value) -> Arg {
        match value {
            Value::String(s) => Arg::Str(s.to_string()),
            // regorus does not tell 2.0 from 2: an integral number is an
            // integer here, as OPA has it for floor() and the like. (OPA
            // formats a literal 2.0 as a float: %g of 100000.0, or %v of
            // 1234567.0, print differently; tests/test_regorus_engine.py.)
            Value::Number(n) => match n.as_i128() {
                Some(v) if i64::try_from(v).is_ok() => Arg::Int(v),
                _ if n.is_integer() => Arg::BigInt(n.format_decimal()),
                _ => Arg::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            other => Arg::Str(rego_text(other)),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Arg::Int(_) => "int64",
            Arg::BigInt(_) => "*big.Int",
            Arg::Float(_) => "float64",
            Arg::Str(_) => "string",
        }
    }

    /// `%v` of the argument with no flags (for `%!verb(type=value)`).
    fn plain(&self) -> String {
        match self {
            Arg::Int(v) => v.to_string(),
            Arg::BigInt(s) => s.clone(),
            Arg::Float(f) => format_float(*f, 'g', -1, false),
            Arg::Str(s) => s.clone(),
        }
    }
}

/// A value's text as OPA's `ast.Term.String()` writes it.
pub fn rego_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => quote(s),
        Value::Number(n) if n.is_integer() => n.format_decimal(),
        Value::Number(n) => format_float(n.as_f64().unwrap_or(f64::NAN), 'g', -1, false),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(rego_text).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Set(s) => {
            if s.is_empty() {
                "set()".into()
            } else {
                let items: Vec<String> = s.iter().map(rego_text).collect();
                format!("{{{}}}", items.join(", "))
            }
        }
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", rego_text(k), rego_text(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Undefined => "undefined".into(),
    }
}

/// Go's strconv.Quote.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Decimal digits of |v| (no trailing zeros) and the decimal point's position:
/// v = 0.d1d2... * 10^dp. `sig` significant digits, or the shortest that
/// reads back as v when None. Zero has no digits.
fn digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let v = v.abs();
    if v == 0.0 {
        return (vec![], 0);
    }
    let text = match sig {
        Some(n) => format!("{:.*e}", n.max(1) - 1, v),
        None => format!("{v:e}"),
    };
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut ds: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while ds.len() > 1 && ds.last() == Some(&b'0') {
        ds.pop();
    }
    if ds == [b'0'] {
        return (vec![], 0);
    }
    (ds, exp + 1)
}

/// Go's fmtE: d.ddd…e±XX with `prec` decimals.
fn fmt_e(ds: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut out = String::new();
    out.push(if ds.is_empty() { '0' } else { ds[0] as char });
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(ds.get(i).map_or('0', |d| *d as char));
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exp = if ds.is_empty() { 0 } else { dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.abs());
    out
}

/// Go's fmtF: the digits with `prec` decimals.
fn fmt_f(ds: &[u8], dp: i32, prec: usize) -> String {
    let mut out = String::new();
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(ds.get(i).map_or('0', |d| *d as char));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i32 {
            let j = dp + i - 1;
            let c = if j >= 0 {
                ds.get(j as usize).map_or('0', |d| *d as char)
            } else {
                '0'
            };
            out.push(c);
        }
    }
    out
}

/// strconv.FormatFloat(v, verb, prec, 64) for verbs e, E, f, F, g, G (prec -1: shortest).
fn format_float(v: f64, verb: char, prec: i32, _sharp: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = v.is_sign_negative() && v != 0.0;
    let sign = if neg { "-" } else { "" };
    let body = match verb {
        'f' | 'F' => {
            if prec < 0 {
                let (ds, dp) = digits(v, None);
                fmt_f(&ds, dp, (ds.len() as i32 - dp).max(0) as usize)
            } else {
                format!("{:.*}", prec as usize, v.abs())
            }
        }
        'e' | 'E' => {
            let (ds, dp, p) = if prec < 0 {
                let (ds, dp) = digits(v, None);
                let p = ds.len().max(1) - 1;
                (ds, dp, p)
            } else {
                let (ds, dp) = digits(v, Some(prec as usize + 1));
                (ds, dp, prec as usize)
            };
            fmt_e(&ds, dp, p, verb == 'E')
        }
        _ => {
            // g, G
            let shortest = prec < 0;
            let (ds, dp) = if shortest {
                digits(v, None)
            } else {
                digits(v, Some(if prec == 0 { 1 } else { prec as usize }))
            };
            let nd = ds.len() as i32;
            let mut prec = if shortest {
                nd
            } else if prec == 0 {
                1
            } else {
                prec
            };
            let mut eprec = prec;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if ds.is_empty() {
                "0".to_string()
            } else if exp < -4 || exp >= eprec {
                if prec > nd {
                    prec = nd;
                }
                fmt_e(&ds, dp, (prec - 1).max(0) as usize, verb == 'G')
            } else {
                if prec > dp {
                    prec = nd;
                }
                fmt_f(&ds, dp, (prec - dp).max(0) as usize)
            }
        }
    };
    format!("{sign}{body}")
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pad to the width: spaces on the left (right with '-'), or zeros after
    /// the sign when `zeros` (numbers with the '0' flag).
    fn pad(&self, text: String, zeros: bool) -> String {
        let len = text.chars().count();
        let Some(width) = self.width else { return text };
        if len >= width {
            return text;
        }
        let fill = width - len;
        if self.minus {
            format!("{text}{}", " ".repeat(fill))
        } else if zeros && self.zero {
            let (sign, rest) = match text.chars().next() {
                Some(c @ ('-' | '+' | ' ')) => (c.to_string(), text[1..].to_string()),
                _ => (String::new(), text),
            };
            format!("{sign}{}{rest}", "0".repeat(fill))
        } else {
            format!("{}{text}", " ".repeat(fill))
        }
    }

    fn signed(&self, neg: bool, digits: String) -> String {
        let sign = if neg {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        format!("{sign}{digits}")
    }
}

/// Go's `%!verb(type=value)`: the value printed with %v and the verb's flags.
fn bad(spec: &Spec, verb: char, arg: &Arg) -> String {
    format!(
        "%!{verb}({}={})",
        arg.type_name(),
        format_one(spec, 'v', arg)
    )
}

fn format_int(spec: &Spec, verb: char, v: i128) -> Option<String> {
    let neg = v < 0;
    let a = v.unsigned_abs();
    let digits = match verb {
        'd' | 'v' => a.to_string(),
        'b' => format!("{a:b}"),
        'o' => {
            if spec.sharp {
                format!("0{a:o}")
            } else {
                format!("{a:o}")
            }
        }
        'O' => format!("0o{a:o}"),
        'x' => {
            if spec.sharp {
                format!("0x{a:x}")
            } else {
                format!("{a:x}")
            }
        }
        'X' => {
            if spec.sharp {
                format!("0X{a:X}")
            } else {
                format!("{a:X}")
            }
        }
        'c' => {
            return Some(
                char::from_u32(u32::try_from(v).ok()?)
                    .unwrap_or('\u{fffd}')
                    .to_string(),
            )
        }
        'q' => {
            let c = char::from_u32(u32::try_from(v).ok()?).unwrap_or('\u{fffd}');
            let q = quote(&c.to_string());
            return Some(format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\"")));
        }
        'U' => format!("U+{a:04X}"),
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            return None;
        }
        _ => return None,
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    Some(spec.signed(neg, digits))
}

fn format_one(spec: &Spec, verb: char, arg: &Arg) -> String {
    match (verb, arg) {
        (_, Arg::Int(v)) => match format_int(spec, verb, *v) {
            Some(text) => {
                let zeros = spec.prec.is_none() && !matches!(verb, 'c' | 'q');
                spec.pad(text, zeros)
            }
            None => bad(spec, verb, arg),
        },
        ('d' | 'v', Arg::BigInt(s)) => {
            let (neg, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest.to_string()),
                None => (false, s.clone()),
            };
            spec.pad(spec.signed(neg, digits), spec.prec.is_none())
        }
        (_, Arg::BigInt(_)) => bad(spec, verb, arg),
        ('v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F', Arg::Float(f)) => {
            let (verb, default) = match verb {
                'v' => ('g', -1),
                'g' | 'G' => (verb, -1),
                _ => (verb, 6),
            };
            let prec = spec.prec.map_or(default, |p| p as i32);
            let text = format_float(*f, verb, prec, spec.sharp);
            let text = if !text.starts_with('-') && f.is_finite() {
                spec.signed(false, text)
            } else if f.is_infinite() && *f > 0.0 && !spec.plus {
                // Go prints +Inf only with the plus flag.
                text.trim_start_matches('+').to_string()
            } else {
                text
            };
            spec.pad(text, f.is_finite())
        }
        (_, Arg::Float(_)) => bad(spec, verb, arg),
        ('v' | 's', Arg::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            spec.pad(s, false)
        }
        ('q', Arg::Str(s)) => spec.pad(quote(s), false),
        ('x' | 'X', Arg::Str(s)) => {
            let mut out = String::new();
            for b in s.bytes() {
                if verb == 'x' {
                    let _ = write!(out, "{b:02x}");
                } else {
                    let _ = write!(out, "{b:02X}");
                }
            }
            spec.pad(out, false)
        }
        (_, Arg::Str(_)) => bad(spec, verb, arg),
    }
}

/// Go's fmt.Sprintf(format, args...).
fn go_sprintf(format: &str, args: &[Arg]) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() {
                width.push(d);
                chars.next();
            } else {
                break;
            }
        }
        if !width.is_empty() {
            spec.width = width.parse().ok();
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut prec = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    prec.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            spec.prec = Some(prec.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(arg) => {
                next += 1;
                out.push_str(&format_one(&spec, verb, arg));
            }
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.plain()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// The `sprintf` extension: sprintf(format, [args...]).
pub fn sprintf(params: Vec<Value>) -> Result<Value> {
    let (Some(Value::String(format)), Some(args)) = (params.first(), params.get(1)) else {
        bail!("sprintf: operand 1 must be string");
    };
    let args: Vec<Arg> = match args {
        Value::Array(a) => a.iter().map(Arg::from).collect(),
        _ => bail!("sprintf: operand 2 must be array"),
    };
    Ok(Value::String(go_sprintf(format, &args).into()))
}
