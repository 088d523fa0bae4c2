//! Interlock's own small Python binding over regorus (Microsoft's Rust Rego
//! interpreter): load modules and data, set an input (JSON text), evaluate a
//! rule or a query, get JSON text back. Evaluation releases the GIL.
//!
//! One `Engine` is used by one thread at a time (the mutex is only there to
//! make that safe if it is not); for several threads, `clone()` a prepared
//! engine once per thread: the clone shares the compiled modules and data.

use std::sync::Mutex;

mod sprintf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use regorus::{Engine as Inner, Rc, Value};

create_exception!(interlock_regorus, RegoError, PyException);

fn err(e: impl std::fmt::Display) -> PyErr {
    RegoError::new_err(format!("{e:#}"))
}

fn anyhow_err(e: anyhow::Error) -> PyErr {
    // The whole cause chain: regorus puts the location in the outer error.
    RegoError::new_err(format!("{e:#}"))
}

#[pyclass(module = "interlock_regorus", name = "Engine", frozen)]
struct Engine {
    inner: Mutex<Inner>,
}

impl Engine {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| err("the engine is poisoned"))?;
        f(&mut guard)
    }
}

#[pymethods]
impl Engine {
    /// A new engine: Rego v1 unless rego_v0; builtin errors are errors when strict.
    #[new]
    #[pyo3(signature = (*, strict_builtin_errors = true, rego_v0 = false))]
    fn new(strict_builtin_errors: bool, rego_v0: bool) -> Self {
        let mut inner = Inner::new();
        inner.set_strict_builtin_errors(strict_builtin_errors);
        inner.set_rego_v0(rego_v0);
        inner
            .add_extension("sprintf".to_string(), 2, Box::new(sprintf::sprintf))
            .expect("a new engine has no extensions");
        Engine {
            inner: Mutex::new(inner),
        }
    }

    /// Parse and add a module; returns its package (e.g. "data.interlock.decision").
    fn add_policy(&self, path: String, source: String) -> PyResult<String> {
        self.with(|e| e.add_policy(path, source).map_err(anyhow_err))
    }

    /// Merge a JSON document into data.
    fn add_data_json(&self, data_json: &str) -> PyResult<()> {
        self.with(|e| e.add_data_json(data_json).map_err(anyhow_err))
    }

    fn set_strict_builtin_errors(&self, strict: bool) -> PyResult<()> {
        self.with(|e| {
            e.set_strict_builtin_errors(strict);
            Ok(())
        })
    }

    /// Set the input document (JSON text).
    fn set_input_json(&self, input_json: &str) -> PyResult<()> {
        self.with(|e| e.set_input_json(input_json).map_err(anyhow_err))
    }

    /// Check the modules together (the compile step an evaluation does first),
    /// with `rule` (e.g. "data.interlock.decision.main") as an entrypoint.
    fn prepare(&self, py: Python<'_>, rule: String) -> PyResult<()> {
        py.detach(|| {
            self.with(|e| {
                let rule: Rc<str> = Rc::from(rule.as_str());
                e.compile_with_entrypoint(&rule)
                    .map(|_| ())
                    .map_err(anyhow_err)
            })
        })
    }

    /// Evaluate one rule (e.g. "data.interlock.decision.main") with input
    /// (JSON text; None keeps the current one). JSON text, or None when undefined.
    #[pyo3(signature = (rule, input_json = None))]
    fn eval_rule(
        &self,
        py: Python<'_>,
        rule: String,
        input_json: Option<String>,
    ) -> PyResult<Option<String>> {
        py.detach(|| {
            self.with(|e| {
                if let Some(text) = input_json {
                    e.set_input_json(&text).map_err(anyhow_err)?;
                }
                let value = e.eval_rule(rule).map_err(anyhow_err)?;
                if value == Value::Undefined {
                    return Ok(None);
                }
                serde_json::to_string(&value).map(Some).map_err(err)
            })
        })
    }

    /// Evaluate a query; OPA-style results as JSON text:
    /// {"result": [{"expressions": [{"value": ..., "text": ...}], "bindings": {...}}]}.
    #[pyo3(signature = (query, input_json = None))]
    fn eval_query(
        &self,
        py: Python<'_>,
        query: String,
        input_json: Option<String>,
    ) -> PyResult<String> {
        py.detach(|| {
            self.with(|e| {
                if let Some(text) = input_json {
                    e.set_input_json(&text).map_err(anyhow_err)?;
                }
                let results = e.eval_query(query, false).map_err(anyhow_err)?;
                serde_json::to_string(&results).map_err(err)
            })
        })
    }

    /// A copy sharing the loaded modules and data, for another thread.
    fn clone(&self) -> PyResult<Engine> {
        self.with(|e| {
            Ok(Engine {
                inner: Mutex::new(e.clone()),
            })
        })
    }
}

#[pymodule]
fn interlock_regorus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("RegoError", m.py().get_type::<RegoError>())?;
    m.add("REGORUS_VERSION", "0.14.1")?;
    Ok(())
}
