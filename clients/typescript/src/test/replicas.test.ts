/**
 * A list of replicas: two REAL servers (`interlock serve`, each on its own
 * SQLite file), and the calls of one client spread over them.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { InterlockClient } from "../client";
import { ROUND_ROBIN_SERVICE_CONFIG, channelTarget, isLoopbackTarget } from "../connection";
import { RealServer } from "./helpers";

describe("channelTarget", () => {
  test("a list becomes an ipv4: target with round_robin", () => {
    for (const given of [["127.0.0.1:1", "127.0.0.1:2"], " 127.0.0.1:1, 127.0.0.1:2 "]) {
      const target = channelTarget(given);
      assert.equal(target.uri, "ipv4:127.0.0.1:1,127.0.0.1:2");
      assert.equal(target.display, "127.0.0.1:1,127.0.0.1:2");
      assert.deepEqual(target.channelOptions, {
        "grpc.service_config": ROUND_ROBIN_SERVICE_CONFIG,
        "grpc.default_authority": "127.0.0.1:1",
      });
    }
    assert.equal(channelTarget("[::1]:1,[::1]:2").uri, "ipv6:[::1]:1,[::1]:2");
    assert.deepEqual(JSON.parse(ROUND_ROBIN_SERVICE_CONFIG), { loadBalancingConfig: [{ round_robin: {} }] });
  });

  test("one address is kept; a resolver target gets round_robin", () => {
    assert.deepEqual(channelTarget("localhost:50051"), {
      display: "localhost:50051",
      uri: "localhost:50051",
      channelOptions: {},
    });
    assert.deepEqual(channelTarget("dns:///interlock.example:50051").channelOptions, {
      "grpc.service_config": ROUND_ROBIN_SERVICE_CONFIG,
    });
  });

  test("a bad list is refused saying why", () => {
    for (const [given, says] of [
      ["localhost:1,localhost:2", /takes IP addresses/],
      ["127.0.0.1:1,[::1]:2", /cannot mix IPv4 and IPv6/],
      ["127.0.0.1:1,", /must be IP:PORT/],
      ["127.0.0.1:1,::1:2", /takes brackets/],
    ] as const) {
      assert.throws(() => new InterlockClient(given), says);
    }
  });

  test("plaintext to a list needs every address to be loopback", () => {
    assert.ok(isLoopbackTarget("ipv4:127.0.0.1:1,127.0.0.2:2"));
    assert.ok(!isLoopbackTarget("ipv4:127.0.0.1:1,10.0.0.1:2"));
    assert.throws(() => new InterlockClient("127.0.0.1:1,10.0.0.1:2"), /not a loopback address/);
  });
});

describe("against two real servers", { timeout: 90_000 }, () => {
  let servers: RealServer[] = [];

  before(async () => {
    servers = await Promise.all([RealServer.start(), RealServer.start()]);
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  /** How many decisions each server has made since it started, asked directly. */
  async function counts(): Promise<number[]> {
    return Promise.all(
      servers.map(async (s) => {
        const direct = new InterlockClient(s.target, { defaultTimeoutMs: 5000 });
        try {
          const health = await direct.getHealth();
          return Object.values(health.decisions).reduce((a, b) => a + b, 0);
        } finally {
          direct.close();
        }
      }),
    );
  }

  test("20 calls split 10 and 10 once both are connected", async () => {
    const client = new InterlockClient(
      servers.map((s) => s.target),
      { defaultTimeoutMs: 5000 },
    );
    let n = 0;
    const decide = () =>
      client.requestToolCall({
        agentId: "agent1",
        tool: "vision_inspect",
        arguments: { target: `replicas ${n++}` },
        confidence: 0.9,
      });
    try {
      const until = Date.now() + 30_000;
      // The channel connects to each replica in the background: call until both have decided.
      while (Math.min(...(await counts())) === 0) {
        assert.ok(Date.now() < until, `not every replica got a call: ${await counts()}`);
        await decide();
      }
      const before = await counts();
      for (let i = 0; i < 20; i++) await decide();
      const after = await counts();
      assert.deepEqual(
        after.map((a, i) => a - (before[i] ?? 0)),
        [10, 10],
      );
    } finally {
      client.close();
    }
  });
});
