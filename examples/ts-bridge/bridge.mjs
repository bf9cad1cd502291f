#!/usr/bin/env node
// @ts-check
/**
 * ts-bridge: a small multi-session bridge between an app and one ACP agent, on the official
 * TypeScript ACP SDK (@agentclientprotocol/sdk). It is the shape of many real bridges (a desktop
 * app's Node sidecar, an editor extension, a chat bot): it launches the agent as its own child,
 * multiplexes the app's conversations onto that one agent, restarts the agent when it dies, and
 * talks to the app in its own line protocol. pytest-acp tests it from the outside
 * (examples/ts_bridge_adapter.py); the README section "Testing a bridge written in another
 * language" walks through it.
 *
 * Usage:  node bridge.mjs [--agent '["cmd", "arg", ...]'] [--bug shared-continuation]
 *   The agent command is --agent or the ACP_AGENT_CMD environment variable: a JSON array.
 *
 * Upward protocol: one JSON object per line on stdin (from the app) and stdout (to the app);
 * every message about a conversation carries the app's own key in "session".
 *   in   {"type":"open","session":K,"cwd":DIR,"mcpServers":[...]}      start a conversation
 *        {"type":"warmup","cwd":DIR,"mcpServers":[...]}                 prepare one ahead of time
 *        {"type":"query","session":K,"prompt":TEXT}                     the next turn
 *        {"type":"interrupt","session":K}                               stop the running turn
 *        {"type":"close","session":K}
 *   out  {"type":"ready"}                                               the first agent is up
 *        {"type":"opened","session":K}   {"type":"warm","cwd":DIR}
 *        {"type":"text","session":K,"delta":TEXT}                       streamed answer text
 *        {"type":"tool","session":K,"phase":"start"|"update","id":ID,"title":T,"status":S}
 *        {"type":"result","session":K,"stopReason":R,"usage":{...}}    end of the turn, or
 *        {"type":"result","session":K,"error":MSG}                      a failed turn
 *        {"type":"interrupted","session":K}   {"type":"closed","session":K}
 *        {"type":"error","session":K,"for":ACTION,"message":MSG}        an action failed
 *        {"type":"agent_restarted","generation":N,"reason":MSG}
 * Closing stdin (or SIGTERM) stops the bridge: its agent gets EOF, then SIGTERM, then SIGKILL.
 *
 * After an agent crash the running turns fail, a new agent is started, and every open
 * conversation is restored on it: `session/resume` for one that had a turn (the agent kept it),
 * `session/new` for one that never had a turn (a phantom: resuming it would fail).
 *
 * THE DELIBERATE BUG, `--bug shared-continuation`: text deltas are delivered to the conversation
 * that queried most recently (one shared "current continuation") instead of the conversation
 * whose agent session sent them. With one conversation at a time nothing shows; as soon as two
 * turns overlap, one conversation's text appears in the other's answer. pytest-acp reports it as
 * P3 (no cross-session bleed), naming both conversations and the stray text.
 */

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const BUGS = ["shared-continuation"];
const MAX_RESTARTS = 5; // within RESTART_WINDOW_MS; more means the agent cannot start: give up
const RESTART_WINDOW_MS = 10_000;
const EXIT_GRACE_MS = 2_000;

/**
 * @typedef {object} Agent one agent process and its ACP connection
 * @property {import("node:child_process").ChildProcessWithoutNullStreams} child
 * @property {acp.ClientConnection} conn
 * @property {number} generation    1 for the first agent, +1 per restart
 * @property {boolean} exited
 * @property {Promise<void>} gone   settles when the process has exited
 *
 * @typedef {object} Turn
 * @property {number} generation    the agent its prompt went to (0: not sent yet)
 * @property {boolean} interrupted
 * @property {boolean} done
 *
 * @typedef {object} Conversation   one app session key
 * @property {string} key
 * @property {string} cwd
 * @property {acp.McpServer[]} mcpServers
 * @property {string | null} sessionId   the agent's id (kept across restarts: resumed by id)
 * @property {number} generation    the agent the session is open on (0: none yet)
 * @property {boolean} prompted     it had a turn, so the agent saved it and it can be resumed
 * @property {boolean} closed
 * @property {Turn | null} turn
 * @property {Promise<void>} chain  this conversation's actions, applied in arrival order
 */

const options = parseArgs(process.argv.slice(2));
/** @type {Map<string, Conversation>} */
const conversations = new Map();
/** @type {Map<string, string>} agent session id -> app key, for the current agent */
const bySessionId = new Map();
/** @type {Map<string, {generation: number, ids: string[]}>} warm sessions by configuration */
const warm = new Map();
/** @type {string | null} only the buggy routing reads this */
let lastQueried = null;
/** @type {Agent | null} */
let agent = null;
/** @type {Promise<Agent | null>} the current agent once initialized and its sessions restored */
let ready = Promise.resolve(null);
let generation = 0;
/** @type {number[]} */
let restarts = [];
let stopping = false;
let announced = false;
/** @type {string | null} */
let fatal = null;

function parseArgs(/** @type {string[]} */ argv) {
  let agentJson = process.env.ACP_AGENT_CMD ?? null;
  /** @type {string | null} */
  let bug = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--agent") agentJson = argv[++i] ?? null;
    else if (argv[i] === "--bug") bug = argv[++i] ?? null;
    else usage(`unknown argument ${argv[i]}`);
  }
  if (bug !== null && !BUGS.includes(bug)) usage(`unknown bug ${bug} (known: ${BUGS.join(", ")})`);
  /** @type {unknown} */
  let command = null;
  try {
    command = agentJson === null ? null : JSON.parse(agentJson);
  } catch {
    usage("the agent command must be a JSON array of strings");
  }
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === "string")) {
    usage("no agent command: pass --agent '[\"cmd\", \"arg\"]' or set ACP_AGENT_CMD");
  }
  return { command: /** @type {string[]} */ (command), bug };
}

/** @returns {never} */
function usage(/** @type {string} */ why) {
  process.stderr.write(`ts-bridge: ${why}\nusage: node bridge.mjs [--agent JSON_ARRAY] [--bug ${BUGS.join("|")}]\n`);
  process.exit(2);
}

/** @param {Record<string, unknown>} message */
function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

/** @param {unknown} err */
function describe(err) {
  if (err && typeof err === "object" && "message" in err) {
    const code = "code" in err ? ` (${err.code})` : "";
    return `${err.message}${code}`;
  }
  return String(err);
}

// -- the agent ------------------------------------------------------------------------------------

function startAgent() {
  const [cmd, ...args] = options.command;
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "inherit"] });
  child.stdin.on("error", () => {}); // EPIPE after the agent died: its exit is handled below
  /** @type {() => void} */
  let settle = () => {};
  /** @type {Agent} */
  const current = {
    child,
    generation: ++generation,
    exited: false,
    gone: new Promise((resolve) => (settle = resolve)),
    conn: acp
      .client({ name: "ts-bridge" })
      .onNotification(acp.methods.client.session.update, ({ params }) => route(params))
      .onRequest(acp.methods.client.session.requestPermission, ({ params }) => allow(params))
      .connect(acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout))),
  };
  agent = current;
  child.on("exit", (code, signal) => {
    onAgentGone(current, signal ? `killed by ${signal}` : `exit code ${code}`);
    settle();
  });
  child.on("error", (err) => {
    onAgentGone(current, `cannot run the agent: ${err.message}`);
    settle();
  });
  ready = initialize(current).then(
    () => {
      if (!announced) emit({ type: "ready" });
      announced = true;
      return current;
    },
    () => null, // it died while starting: onAgentGone has started the next one
  );
  return ready;
}

/** @param {Agent} current */
async function initialize(current) {
  await current.conn.agent.request(acp.methods.agent.initialize, {
    protocolVersion: acp.PROTOCOL_VERSION,
    clientCapabilities: {},
  });
  for (const c of conversations.values()) {
    if (c.closed || c.sessionId === null || c.generation === current.generation) continue;
    await restore(current, c);
  }
}

/** Reopen a conversation on a new agent: resume what the agent saved, recreate a phantom. */
async function restore(/** @type {Agent} */ current, /** @type {Conversation} */ c) {
  const params = { cwd: c.cwd, mcpServers: c.mcpServers };
  let id = null;
  if (c.prompted && c.sessionId !== null) {
    try {
      await current.conn.agent.request(acp.methods.agent.session.resume, { ...params, sessionId: c.sessionId });
      id = c.sessionId;
    } catch {
      id = null; // not on the agent's disk (the prompt never reached it): start afresh
    }
  }
  if (id === null) id = (await current.conn.agent.request(acp.methods.agent.session.new, params)).sessionId;
  c.sessionId = id;
  c.generation = current.generation;
  bySessionId.set(id, c.key);
}

/** @param {Agent} current @param {string} why */
function onAgentGone(current, why) {
  if (current.exited) return;
  current.exited = true;
  for (const c of conversations.values()) {
    if (c.turn && c.turn.generation === current.generation) finish(c, c.turn, { error: `agent ${why}` });
  }
  bySessionId.clear();
  warm.clear();
  if (stopping || agent !== current) return;
  const now = Date.now();
  restarts = [...restarts.filter((t) => now - t < RESTART_WINDOW_MS), now];
  if (restarts.length > MAX_RESTARTS) {
    fatal = `the agent keeps dying (${why}); giving up`;
    emit({ type: "fatal", message: fatal });
    ready = Promise.resolve(null);
    void shutdown(1);
    return;
  }
  emit({ type: "agent_restarted", generation: generation + 1, reason: why });
  void startAgent();
}

/** The current agent, ready; waits through restarts. */
async function live() {
  for (;;) {
    if (fatal) throw new Error(fatal);
    const pending = ready;
    const current = await pending;
    if (current && !current.exited && !current.conn.signal.aborted) return current;
    if (current && !current.exited) {
      await current.gone; // its connection is closed: it is dying, and its exit starts the next one
      continue;
    }
    if (pending === ready) throw new Error("the agent is not running");
  }
}

/**
 * Run `op` on the live agent; if the agent dies under it, run it again on the next one.
 * @template T
 * @param {(a: Agent) => Promise<T>} op
 * @returns {Promise<T>}
 */
async function withAgent(op) {
  for (let attempt = 0; ; attempt++) {
    const current = await live();
    try {
      return await op(current);
    } catch (err) {
      const died = await Promise.race([current.gone.then(() => true), sleep(500).then(() => false)]);
      if (!died || attempt >= 3) throw err;
    }
  }
}

function sleep(/** @type {number} */ ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Answer permission requests by allowing once (the app would ask its user). */
function allow(/** @type {acp.RequestPermissionRequest} */ params) {
  const option = params.options.find((o) => o.kind.startsWith("allow")) ?? params.options[0];
  return { outcome: { outcome: "selected", optionId: option.optionId } };
}

// -- routing the agent's updates to the app ------------------------------------------------------------

/** @param {acp.SessionNotification} params */
function route(params) {
  const key = options.bug === "shared-continuation" ? lastQueried : bySessionId.get(params.sessionId);
  if (key === undefined || key === null) return; // a session no conversation owns: drop it
  const update = params.update;
  switch (update.sessionUpdate) {
    case "agent_message_chunk":
      if (update.content.type === "text") emit({ type: "text", session: key, delta: update.content.text });
      break;
    case "tool_call":
      emit({ type: "tool", session: key, phase: "start", id: update.toolCallId, title: update.title, status: update.status ?? "pending" });
      break;
    case "tool_call_update":
      emit({ type: "tool", session: key, phase: "update", id: update.toolCallId, status: update.status ?? null });
      break;
    default:
      break; // thoughts, plans, usage and command lists are not part of this app's protocol
  }
}

/** @param {Conversation} c @param {Turn} turn @param {Record<string, unknown>} fields */
function finish(c, turn, fields) {
  if (turn.done) return;
  turn.done = true;
  if (c.turn === turn) c.turn = null;
  emit({ type: "result", session: c.key, ...fields });
  if (c.closed) forget(c);
}

function forget(/** @type {Conversation} */ c) {
  if (c.turn) return; // still streaming: routed until its result
  conversations.delete(c.key);
  if (c.sessionId !== null && bySessionId.get(c.sessionId) === c.key) bySessionId.delete(c.sessionId);
}

// -- the app's requests ------------------------------------------------------------------------------

/** @param {Conversation} c @param {() => Promise<void>} step @param {string} action */
function chain(c, step, action) {
  c.chain = c.chain.then(step).catch((err) => emit({ type: "error", session: c.key, for: action, message: describe(err) }));
}

/** @param {string} cwd @param {unknown} mcpServers */
function configKey(cwd, mcpServers) {
  return JSON.stringify([cwd, mcpServers]);
}

/** @param {Agent} current @param {string} cwd @param {acp.McpServer[]} mcpServers */
function takeWarm(current, cwd, mcpServers) {
  const pool = warm.get(configKey(cwd, mcpServers));
  if (!pool || pool.generation !== current.generation) return null;
  return pool.ids.shift() ?? null;
}

/** @param {Record<string, any>} m */
function handle(m) {
  const key = typeof m.session === "string" ? m.session : null;
  const c = key === null ? undefined : conversations.get(key);
  switch (m.type) {
    case "open": {
      if (key === null || c) return emit({ type: "error", session: key, for: "open", message: "missing or duplicate session key" });
      /** @type {Conversation} */
      const conv = {
        key,
        cwd: String(m.cwd),
        mcpServers: m.mcpServers ?? [],
        sessionId: null,
        generation: 0,
        prompted: false,
        closed: false,
        turn: null,
        chain: Promise.resolve(),
      };
      conversations.set(key, conv);
      return chain(conv, () => open(conv), "open");
    }
    case "warmup":
      return void warmup(String(m.cwd), m.mcpServers ?? []);
    case "query": {
      if (!c || c.closed) return emit({ type: "error", session: key, for: "query", message: "no such session" });
      if (c.turn) return emit({ type: "error", session: key, for: "query", message: "a turn is already running" });
      /** @type {Turn} */
      const turn = { generation: 0, interrupted: false, done: false };
      c.turn = turn; // from now on an interrupt applies to it, whether its prompt is sent yet or not
      return chain(c, () => query(c, turn, String(m.prompt)), "query");
    }
    case "interrupt":
      if (!c) return emit({ type: "error", session: key, for: "interrupt", message: "no such session" });
      return interrupt(c); // at once, not behind a prompt still waiting for its agent
    case "close":
      if (!c || c.closed) return emit({ type: "error", session: key, for: "close", message: "no such session" });
      return chain(c, () => close(c), "close");
    default:
      return emit({ type: "error", session: key, for: String(m.type), message: "unknown message type" });
  }
}

async function open(/** @type {Conversation} */ c) {
  try {
    await withAgent(async (current) => {
      const id =
        takeWarm(current, c.cwd, c.mcpServers) ??
        (await current.conn.agent.request(acp.methods.agent.session.new, { cwd: c.cwd, mcpServers: c.mcpServers })).sessionId;
      c.sessionId = id;
      c.generation = current.generation;
      bySessionId.set(id, c.key);
    });
  } catch (err) {
    conversations.delete(c.key);
    throw err;
  }
  emit({ type: "opened", session: c.key });
}

async function warmup(/** @type {string} */ cwd, /** @type {acp.McpServer[]} */ mcpServers) {
  try {
    await withAgent(async (current) => {
      const { sessionId } = await current.conn.agent.request(acp.methods.agent.session.new, { cwd, mcpServers });
      const config = configKey(cwd, mcpServers);
      const pool = warm.get(config);
      if (pool && pool.generation === current.generation) pool.ids.push(sessionId);
      else warm.set(config, { generation: current.generation, ids: [sessionId] });
    });
    emit({ type: "warm", cwd });
  } catch (err) {
    emit({ type: "error", session: null, for: "warmup", message: describe(err) });
  }
}

async function query(/** @type {Conversation} */ c, /** @type {Turn} */ turn, /** @type {string} */ text) {
  /** @type {Agent} */
  let current;
  try {
    current = await live(); // waits through an agent restart; a turn is never sent twice
  } catch (err) {
    return finish(c, turn, { error: describe(err) });
  }
  // Interrupted while it waited (for the open, or for a restarted agent): never sent, so there is
  // nothing to cancel at the agent.
  if (turn.interrupted) return finish(c, turn, { stopReason: "cancelled" });
  if (c.sessionId === null || c.generation !== current.generation) {
    return finish(c, turn, { error: "the session is not open" });
  }
  turn.generation = current.generation;
  c.prompted = true;
  lastQueried = c.key;
  current.conn.agent
    .request(acp.methods.agent.session.prompt, { sessionId: c.sessionId, prompt: [{ type: "text", text }] })
    .then(
      async (response) => {
        // The SDK settles a response at once but runs each notification's handlers through a
        // few awaits, so an update that arrived just before the response may not be routed yet:
        // let every handler of messages already read finish before the turn is declared over.
        await new Promise((resolve) => setImmediate(resolve));
        const stopReason = turn.interrupted ? "cancelled" : response.stopReason;
        finish(c, turn, { stopReason, agentStopReason: response.stopReason, usage: response.usage ?? null });
      },
      (err) => finish(c, turn, { error: describe(err) }),
    );
}

function interrupt(/** @type {Conversation} */ c) {
  const turn = c.turn;
  if (turn && !turn.done && !turn.interrupted) {
    turn.interrupted = true; // reported `cancelled` whatever the agent answers from now on
    const current = agent;
    if (turn.generation !== 0 && current && !current.exited && current.generation === turn.generation && c.sessionId) {
      current.conn.agent.notify(acp.methods.agent.session.cancel, { sessionId: c.sessionId }).catch(() => {});
    }
  }
  emit({ type: "interrupted", session: c.key });
}

async function close(/** @type {Conversation} */ c) {
  c.closed = true; // from now on a restart does not reopen it
  try {
    await withAgent(async (current) => {
      if (c.sessionId !== null && c.generation === current.generation) {
        await current.conn.agent.request(acp.methods.agent.session.close, { sessionId: c.sessionId });
      }
    });
  } finally {
    forget(c);
  }
  emit({ type: "closed", session: c.key });
}

// -- lifetime ----------------------------------------------------------------------------------------

async function shutdown(/** @type {number} */ code) {
  if (stopping) return;
  stopping = true;
  const current = agent;
  if (current && !current.exited) {
    current.child.stdin.end(); // the agent answers what it was asked, then exits on EOF
    for (const signal of /** @type {const} */ ([null, "SIGTERM", "SIGKILL"])) {
      if (signal) current.child.kill(signal);
      const gone = await Promise.race([current.gone.then(() => true), sleep(EXIT_GRACE_MS).then(() => false)]);
      if (gone) break;
    }
  }
  process.exit(code);
}

process.stdout.on("error", () => void shutdown(1)); // the app went away
process.on("SIGTERM", () => void shutdown(0));
process.on("SIGINT", () => void shutdown(0));
const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on("line", (line) => {
  if (!line.trim()) return;
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return emit({ type: "error", session: null, for: "input", message: `not JSON: ${line.slice(0, 80)}` });
  }
  handle(message);
});
input.on("close", () => void shutdown(0));

void startAgent();
