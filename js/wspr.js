// wspr.js: the JavaScript side of wsprd.
//
// One ES module with no dependencies, for browsers and Node (20 and later).
// It speaks wsprd's websocket protocol (docs/protocol.md in the wspr
// repository): JavaScript starts its flows with odd ids, the daemon starts
// its flows with even ids.
//
//   const rt = await connect('ws://127.0.0.1:8124/ws', { reconnect: true });
//   const adder = await rt.bindTo('demo/adder');
//   await adder.add(2, 3);                         // 5
//   const server = await rt.serve('me/hello', { hello(ctx, who) { return `hi ${who}`; } });
//
// See docs/javascript.md for the tutorial and wspr.d.ts for the types.

// ---------------------------------------------------------------- errors

/** The protocol's error ids (docs/protocol.md, section 4). */
export const errorIds = Object.freeze({
  aborted: 'veyron2/verror.Aborted',
  badArg: 'veyron2/verror.BadArg',
  badProtocol: 'veyron2/verror.BadProtocol',
  exists: 'veyron2/verror.Exists',
  internal: 'veyron2/verror.Internal',
  noAccess: 'veyron2/verror.NoAccess',
  noExist: 'veyron2/verror.NoExist',
  timeout: 'veyron2/verror.Timeout',
  unknown: 'veyron2/verror.Unknown',
});

/** An error with an id: the contract's ids, or an application's own. */
export class WsprError extends Error {
  constructor(id, message, options) {
    super(message, options);
    if (typeof id !== 'string' || id === '') {
      throw new TypeError('WsprError: the id must be a non-empty string');
    }
    this.id = id;
    this.name = new.target.name;
  }

  /** The error value of the wire: `{id, msg}`. */
  toJSON() {
    return { id: this.id, msg: this.message };
  }
}

function errorClass(name, id) {
  // A named class whose constructor takes only the message.
  const cls = {
    [name]: class extends WsprError {
      constructor(message, options) {
        super(id, message, options);
      }
    },
  }[name];
  return cls;
}

/** The flow was cancelled, the server stopped, or the pipe closed. */
export const AbortedError = errorClass('AbortedError', errorIds.aborted);
/** Bad arguments, a wrong number of arguments, a malformed payload. */
export const BadArgError = errorClass('BadArgError', errorIds.badArg);
/** A frame the daemon could not read. */
export const BadProtocolError = errorClass('BadProtocolError', errorIds.badProtocol);
/** A name or id already in use. */
export const ExistsError = errorClass('ExistsError', errorIds.exists);
/** A fault inside the daemon, or a reply that cannot be decoded. */
export const InternalError = errorClass('InternalError', errorIds.internal);
/** Refused by an authorizer. */
export const NoAccessError = errorClass('NoAccessError', errorIds.noAccess);
/** No such name, server, object or method. */
export const NoExistError = errorClass('NoExistError', errorIds.noExist);
/** A deadline passed. */
export const TimeoutError = errorClass('TimeoutError', errorIds.timeout);
/** Anything else. */
export const UnknownError = errorClass('UnknownError', errorIds.unknown);

/** The pipe to wsprd is gone: closed by close(), by the daemon, or lost. */
export class ConnectionError extends AbortedError {}

const CLASSES = new Map([
  [errorIds.aborted, AbortedError],
  [errorIds.badArg, BadArgError],
  [errorIds.badProtocol, BadProtocolError],
  [errorIds.exists, ExistsError],
  [errorIds.internal, InternalError],
  [errorIds.noAccess, NoAccessError],
  [errorIds.noExist, NoExistError],
  [errorIds.timeout, TimeoutError],
  [errorIds.unknown, UnknownError],
]);

/**
 * The Error for an error value of the wire (`{id, msg}`; `iD` and
 * `message` are accepted too): the contract's ids get their own classes,
 * any other id a WsprError that keeps it.
 */
export function errorFromWire(value) {
  if (value === null || typeof value !== 'object') {
    return new UnknownError(String(value));
  }
  const id = typeof value.id === 'string' ? value.id : typeof value.iD === 'string' ? value.iD : errorIds.unknown;
  const msg = typeof value.msg === 'string' ? value.msg : typeof value.message === 'string' ? value.message : '';
  const cls = CLASSES.get(id);
  return cls ? new cls(msg) : new WsprError(id, msg);
}

/** The wire's error value for anything thrown; ids are kept. */
function errorToWire(err, defaultId = errorIds.unknown) {
  if (err !== null && typeof err === 'object') {
    const id = typeof err.id === 'string' && err.id !== '' ? err.id : defaultId;
    const msg = typeof err.message === 'string' ? err.message : String(err);
    return { id, msg };
  }
  return { id: defaultId, msg: String(err) };
}

// ------------------------------------------------------------ the wire

// Types JavaScript sends.
const IN = Object.freeze({
  call: 0,
  serve: 1,
  serverResponse: 2,
  streamValue: 3,
  streamClose: 4,
  signature: 5,
  stopServer: 6,
  lookupResponse: 11,
  authResponse: 12,
  namespace: 13,
  cancel: 17,
  // Extensions of wspr's: docs/protocol.md.
  removeName: 19,
  token: 20,
});
// Types the daemon sends.
const OUT = Object.freeze({
  final: 0,
  stream: 1,
  error: 2,
  serverRequest: 3,
  streamClose: 4,
  lookup: 5,
  authRequest: 6,
  cancel: 7,
});

/** Names of the message types, for logs: `typeNames.in[3]` is 'streamValue'. */
export const typeNames = Object.freeze({
  in: Object.freeze(Object.fromEntries(Object.entries(IN).map(([k, v]) => [v, k]))),
  out: Object.freeze(
    Object.fromEntries(
      Object.entries({
        final: 0,
        stream: 1,
        error: 2,
        serverRequest: 3,
        streamClose: 4,
        dispatcherLookup: 5,
        authRequest: 6,
        cancel: 7,
      }).map(([k, v]) => [v, k]),
    ),
  ),
});

const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Handles of JavaScript objects kept per server, besides cacheable ones. */
const MAX_HANDLES = 10_000;

function isPlainObject(v) {
  if (v === null || typeof v !== 'object') return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function checkName(what, name) {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new BadArgError(`${what}: the name must be a non-empty string, not ${describe(name)}`);
  }
}

function checkOptions(what, options, allowed) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new BadArgError(`${what}: options must be an object, not ${describe(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!allowed.includes(k)) {
      throw new BadArgError(`${what}: unknown option ${JSON.stringify(k)} (known: ${allowed.join(', ')})`);
    }
  }
  return options;
}

function checkTimeout(what, t) {
  if (t === undefined) return 0;
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) {
    throw new BadArgError(`${what}: timeout must be a number of milliseconds >= 0, not ${describe(t)}`);
  }
  return t;
}

/**
 * The `serverBlessings` option: blessing patterns the server must prove a
 * name matching, else nothing is sent to it (the call fails with
 * NoAccessError). Undefined when not given.
 */
function checkServerBlessings(what, v) {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((p) => typeof p === 'string' && p !== '')) {
    throw new BadArgError(`${what}: serverBlessings must be a non-empty array of blessing patterns, not ${describe(v)}`);
  }
  return v;
}

/**
 * What an authorizer's answer means. Only `undefined` and `true` allow
 * (null is returned); anything else refuses: an Error with its id
 * (NoAccess if it has none), any other value with NoAccess.
 */
function authorizerVerdict(ret) {
  if (ret === undefined || ret === true) return null;
  if (ret instanceof Error) return errorToWire(ret, errorIds.noAccess);
  return { id: errorIds.noAccess, msg: `refused by the authorizer (it returned ${describe(ret)})` };
}

function checkSignal(what, s) {
  if (s === undefined) return undefined;
  if (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw new BadArgError(`${what}: signal must be an AbortSignal, not ${describe(s)}`);
  }
  return s;
}

/** JSON text for a value, or a BadArgError saying why it has none. */
function toJson(what, value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new BadArgError(`${what} cannot be sent as JSON: ${e.message}`, { cause: e });
  }
  if (text === undefined) {
    throw new BadArgError(`${what} cannot be sent as JSON (it is ${typeof value})`);
  }
  return text;
}

/** Calls `fn` once, when `signal` aborts or the timer fires; `clear()` undoes both. */
function deadline(signal, timeout, onSignal, onTimeout) {
  let timer;
  const abort = () => onSignal(signal.reason);
  if (signal) signal.addEventListener('abort', abort, { once: true });
  if (timeout > 0) timer = setTimeout(onTimeout, timeout);
  return () => {
    if (signal) signal.removeEventListener('abort', abort);
    if (timer !== undefined) clearTimeout(timer);
  };
}

/**
 * What a served method or an authorizer is given as `ctx`: `name`,
 * `suffix`, `remoteId`, `timeout` when the caller has a deadline, and for
 * a request `signal`, made on first use. One shape for every request (a
 * class, its `signal` a getter of the prototype), so that making one costs
 * the engine no new hidden class: the getter was a closure defined on each
 * context, which gave every request's context a map of its own.
 */
class CallContext {
  #req;

  constructor(name, suffix, remoteId, req) {
    this.name = name;
    this.suffix = suffix;
    this.remoteId = remoteId;
    this.#req = req;
  }

  /** Aborts when the caller cancels, its deadline passes, the server stops or the pipe closes; undefined for an authorizer. */
  get signal() {
    const req = this.#req;
    if (!req) return undefined;
    if (!req.controller) {
      req.controller = new AbortController();
      if (req.abortReason) req.controller.abort(req.abortReason);
    }
    return req.controller.signal;
  }
}

// ------------------------------------------------------------- streams

const PUSH = Symbol('push');
const CLOSE = Symbol('close');
const FAIL = Symbol('fail');
const FINISH = Symbol('finish');

/**
 * One side of a streaming flow: `write` and `end` send, `for await` reads
 * what the other side sends until it closes its side. Reading fails with
 * the flow's error if the flow fails.
 */
export class Stream {
  #queue = [];
  #waiters = [];
  #readEnded = false;
  #error = null;
  #writeEnded = false;
  #finished = null;
  #send;
  #sendEnd;
  #what;

  /** @internal Made by the runtime. */
  constructor(what, send, sendEnd) {
    this.#what = what;
    this.#send = send;
    this.#sendEnd = sendEnd;
  }

  /** Sends one item (any JSON value) to the other side. */
  write(value) {
    if (this.#finished) {
      throw new BadArgError(`${this.#what}: cannot write, ${this.#finished}`);
    }
    if (this.#writeEnded) {
      throw new BadArgError(`${this.#what}: cannot write after end()`);
    }
    this.#send(value);
  }

  /** Ends this side of the stream; the other side's reading ends. */
  end() {
    if (this.#writeEnded || this.#finished) return;
    this.#writeEnded = true;
    this.#sendEnd();
  }

  /** Whether `end()` was called or the flow is over. */
  get writableEnded() {
    return this.#writeEnded || this.#finished !== null;
  }

  /** The next item, as an async iterator does. */
  next() {
    if (this.#queue.length > 0) {
      return Promise.resolve({ value: this.#queue.shift(), done: false });
    }
    if (this.#error) return Promise.reject(this.#error);
    if (this.#readEnded) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Stops reading: items that come later are dropped. */
  return() {
    this.#readEnded = true;
    this.#queue.length = 0;
    this.#wake();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  #wake() {
    while (this.#waiters.length > 0) {
      const w = this.#waiters.shift();
      if (this.#queue.length > 0) w.resolve({ value: this.#queue.shift(), done: false });
      else if (this.#error) w.reject(this.#error);
      else if (this.#readEnded) w.resolve({ value: undefined, done: true });
      else {
        this.#waiters.unshift(w);
        return;
      }
    }
  }

  [PUSH](value) {
    if (this.#readEnded || this.#error) return;
    this.#queue.push(value);
    this.#wake();
  }

  [CLOSE]() {
    this.#readEnded = true;
    this.#wake();
  }

  /** The flow failed: reading past the queued items throws `err`. */
  [FAIL](err) {
    if (!this.#readEnded && !this.#error) this.#error = err;
    this.#wake();
  }

  /** The flow is over: no more writing. */
  [FINISH](why) {
    if (!this.#finished) this.#finished = why;
  }
}

/**
 * A streaming call in flight: `await call` gives the result, `call.stream`
 * sends (write, end) and receives (for await) items.
 */
export class Call {
  #promise;
  /** @internal Made by the runtime. */
  constructor(promise, stream) {
    this.#promise = promise;
    // The caller may read only the stream; a failure then surfaces there,
    // so the promise's own rejection is not "unhandled".
    promise.catch(() => {});
    /** The call's stream. */
    this.stream = stream;
  }

  then(onFulfilled, onRejected) {
    return this.#promise.then(onFulfilled, onRejected);
  }

  catch(onRejected) {
    return this.#promise.catch(onRejected);
  }

  finally(onFinally) {
    return this.#promise.finally(onFinally);
  }

  get [Symbol.toStringTag]() {
    return 'Call';
  }
}

// ---------------------------------------------------------- signatures

/** Parameter names of a function, from its source; null if they cannot be told. */
function parameterNames(fn) {
  let src = Function.prototype.toString.call(fn);
  src = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const arrow = /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
  if (arrow) return [arrow[1]];
  const open = src.indexOf('(');
  if (open < 0) return null;
  let depth = 0;
  let close = -1;
  for (let i = open; i < src.length; i++) {
    const c = src[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        close = i;
        break;
      }
    }
  }
  if (close < 0) return null;
  const inner = src.slice(open + 1, close);
  const params = [];
  let cur = '';
  depth = 0;
  for (const c of inner) {
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    if (c === ',' && depth === 0) {
      params.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur.trim() !== '') params.push(cur);
  const names = [];
  for (const [i, p] of params.map((s) => s.trim()).entries()) {
    if (p.startsWith('...')) return null;
    const m = /^([A-Za-z_$][\w$]*)\s*(=|$)/.exec(p);
    names.push(m ? m[1] : `arg${i}`);
  }
  return names;
}

/** Method names of an object: own and inherited functions, not Object's, not _private. */
function methodNames(obj) {
  const names = new Set();
  for (let o = obj; o && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === 'constructor' || k.startsWith('_') || names.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d && typeof d.value === 'function') names.add(k);
    }
  }
  return [...names];
}

function checkMethodSignature(what, m) {
  if (!isPlainObject(m)) throw new BadArgError(`${what} must be an object, not ${describe(m)}`);
  for (const k of Object.keys(m)) {
    if (!['inArgs', 'numOutArgs', 'isStreaming'].includes(k)) {
      throw new BadArgError(`${what}: unknown field ${JSON.stringify(k)} (known: inArgs, numOutArgs, isStreaming)`);
    }
  }
  if (m.inArgs !== undefined && !(Array.isArray(m.inArgs) && m.inArgs.every((a) => typeof a === 'string'))) {
    throw new BadArgError(`${what}.inArgs must be an array of argument names`);
  }
  if (m.numOutArgs !== undefined && !(Number.isInteger(m.numOutArgs) && m.numOutArgs >= 1)) {
    throw new BadArgError(`${what}.numOutArgs must be an integer >= 1 (results plus the error slot)`);
  }
  if (m.isStreaming !== undefined && typeof m.isStreaming !== 'boolean') {
    throw new BadArgError(`${what}.isStreaming must be a boolean`);
  }
}

/**
 * The signature of a service object: one entry per method, the first
 * parameter (the context) left out. `explicit` gives or overrides entries,
 * whole or in part (`{sum: {isStreaming: true}}`).
 */
export function signatureOf(service, explicit) {
  if (service === null || (typeof service !== 'object' && typeof service !== 'function')) {
    throw new BadArgError(`a service must be an object, not ${describe(service)}`);
  }
  if (explicit !== undefined && !isPlainObject(explicit)) {
    throw new BadArgError(`a signature must be an object {method: {inArgs, numOutArgs, isStreaming}}, not ${describe(explicit)}`);
  }
  const sig = {};
  for (const name of methodNames(service)) {
    // (Own properties only: not toString and the like from Object.prototype.)
    const given = explicit && Object.hasOwn(explicit, name) ? explicit[name] : undefined;
    if (given !== undefined) checkMethodSignature(`the signature of ${name}`, given);
    let inArgs = given?.inArgs;
    if (inArgs === undefined) {
      const params = parameterNames(service[name]);
      if (params === null) {
        throw new BadArgError(
          `cannot tell the arguments of method ${name} (a rest parameter?); give them in its signature: {${name}: {inArgs: [...]}}`,
        );
      }
      inArgs = params.slice(1);
    }
    sig[name] = {
      inArgs: [...inArgs],
      numOutArgs: given?.numOutArgs ?? 2,
      isStreaming: given?.isStreaming ?? false,
    };
  }
  for (const name of Object.keys(explicit ?? {})) {
    if (!Object.hasOwn(sig, name)) {
      throw new BadArgError(`the signature names method ${name}, but the service has no such function`);
    }
  }
  // An object with no methods is a signature with none: serving it
  // publishes a name (every call of it is NoExist).
  return sig;
}

/** A stub method's result: one value for one result, undefined for none, else the array. */
function unwrapResults(results, numOutArgs) {
  const n = (numOutArgs ?? 2) - 1;
  if (n === 1) return results[0];
  if (n === 0) return undefined;
  return results;
}

/** A service method's return value as the wire's results array. */
function wrapResults(method, ret, numOutArgs) {
  const n = numOutArgs - 1;
  if (n <= 0) return [];
  if (n === 1) return [ret === undefined ? null : ret];
  if (!Array.isArray(ret) || ret.length !== n) {
    throw new InternalError(`${method} must return an array of ${n} results, returned ${describe(ret)}`);
  }
  return ret;
}

// -------------------------------------------------------------- server

/** A server whose objects live in this runtime. Made by `Runtime.serve`. */
export class Server {
  #rt;
  #state;
  #stopping = null;

  /** @internal */
  constructor(rt, state) {
    this.#rt = rt;
    this.#state = state;
    state.server = this;
    /** The number the pipe knows it by. */
    this.serverId = state.id;
  }

  /**
   * The server's endpoint; `/<endpoint>/<suffix>` reaches it directly. A
   * runtime that reconnects serves it again, at a new endpoint.
   */
  get endpoint() {
    return this.#state.endpoint;
  }

  /** The names it is served under. */
  get names() {
    return [...this.#state.names];
  }

  /** Whether the server was stopped (by stop(), or by its runtime's end). */
  get stopped() {
    return this.#state.stopped;
  }

  /** Serves it under one more name. */
  async addName(name) {
    checkName('addName', name);
    if (this.#state.stopped) throw new BadArgError(`addName: server ${this.serverId} was stopped`);
    if (this.#state.names.includes(name)) throw new ExistsError(`addName: server ${this.serverId} is already served as ${name}`);
    await this.#rt._request(IN.serve, { name, serverId: this.#state.id }, { what: `addName ${name}` });
    if (!this.#state.names.includes(name)) this.#state.names.push(name);
  }

  /**
   * Stops serving it under `name` (the daemon unmounts that name); the
   * server goes on under its other names and at its endpoint. A name it
   * does not have: NoExistError.
   */
  async removeName(name) {
    checkName('removeName', name);
    if (this.#state.stopped) throw new BadArgError(`removeName: server ${this.serverId} was stopped`);
    const i = this.#state.names.indexOf(name);
    if (i < 0) throw new NoExistError(`removeName: server ${this.serverId} is not served as ${name}`);
    // Forgotten at once, so that a runtime that reconnects does not serve
    // it again.
    this.#state.names.splice(i, 1);
    try {
      await this.#rt._request(IN.removeName, { name, serverId: this.#state.id }, { what: `removeName ${name}` });
    } catch (e) {
      // Not served by the daemon (a pipe that came back before the server
      // was served again, say): removed all the same.
      if (!(e instanceof NoExistError)) {
        if (!this.#state.names.includes(name)) this.#state.names.splice(i, 0, name);
        throw e;
      }
    }
  }

  /**
   * Unmounts and stops the server. Calls in flight are cancelled: their
   * contexts' signals abort. Stopping twice, or after the runtime closed,
   * is fine.
   */
  stop() {
    if (!this.#stopping) {
      this.#stopping = (async () => {
        if (this.#state.stopped) return;
        if (!this.#rt._isConnected) {
          // The daemon dropped it with the pipe; it is not served again.
          this.#rt._dropServer(this.#state, new AbortedError(`server ${this.serverId} was stopped`));
          return;
        }
        try {
          await this.#rt._request(IN.stopServer, this.#state.id);
        } catch (e) {
          // The runtime closed or lost its pipe, or the daemon no longer
          // has the server: it is stopped all the same. Anything else:
          // stop() may be tried again.
          if (!(e instanceof ConnectionError || e instanceof NoExistError)) {
            this.#stopping = null;
            throw e;
          }
        }
        this.#rt._dropServer(this.#state, new AbortedError(`server ${this.serverId} was stopped`));
      })();
    }
    return this.#stopping;
  }
}

class ServerState {
  constructor(id, dispatcher) {
    this.id = id;
    this.dispatcher = dispatcher;
    this.stopped = false;
    /** The names it is served under, in order. */
    this.names = [];
    /** Its endpoint on the current pipe. */
    this.endpoint = '';
    /** Its Server, once made. */
    this.server = null;
    /** handle -> {service, authorizer, signature, pinned, active} */
    this.handles = new Map();
    /** service -> authorizer (or NO_AUTH) -> handle */
    this.byObject = new WeakMap();
    this.nextHandle = 1;
    /** In-flight server requests (their flow states). */
    this.requests = new Set();
    /** Signatures computed for (service, explicit signature). */
    this.signatures = new WeakMap();
  }

  handleFor(service, authorizer, signature, pinned) {
    const key = authorizer ?? NO_AUTH;
    let inner = this.byObject.get(service);
    if (!inner) {
      inner = new WeakMap();
      this.byObject.set(service, inner);
    }
    let h = inner.get(key);
    let entry = h !== undefined ? this.handles.get(h) : undefined;
    if (entry && entry.signature !== signature) entry = undefined;
    if (entry) {
      entry.pinned ||= pinned;
      // Most recently used last.
      this.handles.delete(h);
      this.handles.set(h, entry);
      return h;
    }
    h = this.nextHandle++;
    this.handles.set(h, { service, authorizer, signature, pinned, active: 0 });
    inner.set(key, h);
    this.#evict();
    return h;
  }

  #evict() {
    let unpinned = 0;
    for (const e of this.handles.values()) if (!e.pinned) unpinned++;
    if (unpinned <= MAX_HANDLES) return;
    for (const [h, e] of this.handles) {
      if (!e.pinned && e.active === 0) {
        this.handles.delete(h);
        return;
      }
    }
  }

  signatureFor(service, explicit) {
    const key = explicit ?? NO_AUTH;
    let inner = this.signatures.get(service);
    if (!inner) {
      inner = new WeakMap();
      this.signatures.set(service, inner);
    }
    let sig = inner.get(key);
    if (!sig) {
      sig = signatureOf(service, explicit);
      inner.set(key, sig);
    }
    return sig;
  }
}

const NO_AUTH = Object.freeze({});

function leafDispatcher(name, service, authorizer, signature) {
  return (suffix) => {
    if (suffix !== '') throw new NoExistError(`${name} is a leaf: it has no object at suffix ${JSON.stringify(suffix)}`);
    return { service, authorizer, signature, cacheable: true };
  };
}

// ------------------------------------------------------------- runtime

/** What a runtime's `state` event says: its new state, and why. */
export class StateEvent extends Event {
  /** @internal */
  constructor(state, error) {
    super('state');
    /** 'connecting', 'open', 'reconnecting' or 'closed'. */
    this.state = state;
    /** Why the pipe was lost or closed (reconnecting, closed), or the last attempt failed. */
    this.error = error ?? null;
  }
}

/** What a runtime's `serveerror` event says: a name not served again after a reconnect. */
export class ServeErrorEvent extends Event {
  /** @internal */
  constructor(server, name, error) {
    super('serveerror');
    this.server = server;
    this.name = name;
    this.error = error;
  }
}

/** What a runtime's `tokenerror` event says: a token function failed, or its token was refused on renewal. */
export class TokenErrorEvent extends Event {
  /** @internal */
  constructor(error) {
    super('tokenerror');
    this.error = error;
  }
}

/** The longest token taken (the daemon's limit too). */
const MAX_TOKEN_BYTES = 16 * 1024;

function checkToken(what, t) {
  if (typeof t !== 'string' || t === '' || t.length > MAX_TOKEN_BYTES) {
    throw new BadArgError(`${what}: a token must be a non-empty string of at most ${MAX_TOKEN_BYTES} characters, not ${describe(t)}`);
  }
  return t;
}

/** Renewal of a token from a function: at 3/4 of what is left of it, at least 1 s before it expires. */
function renewDelay(expiresAt, now = Date.now()) {
  const left = expiresAt - now;
  return Math.max(0, Math.min(left * 0.75, left - 1000));
}

const DEFAULT_RECONNECT = Object.freeze({ initialDelay: 250, maxDelay: 10_000 });

function checkReconnect(r) {
  if (r === undefined || r === false) return null;
  if (r === true) return { ...DEFAULT_RECONNECT };
  if (!isPlainObject(r)) {
    throw new BadArgError(`connect: reconnect must be true, false or {initialDelay, maxDelay}, not ${describe(r)}`);
  }
  const o = checkOptions('connect: reconnect', r, ['initialDelay', 'maxDelay']);
  const out = { ...DEFAULT_RECONNECT };
  for (const k of ['initialDelay', 'maxDelay']) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'number' || !Number.isFinite(o[k]) || o[k] <= 0) {
      throw new BadArgError(`connect: reconnect.${k} must be a number of milliseconds > 0, not ${describe(o[k])}`);
    }
    out[k] = o[k];
  }
  if (out.maxDelay < out.initialDelay) {
    throw new BadArgError(`connect: reconnect.maxDelay (${out.maxDelay}) is less than initialDelay (${out.initialDelay})`);
  }
  return out;
}

/**
 * The wait before reconnect attempt `n` (0, 1, ...): doubling from
 * `initialDelay` up to `maxDelay`, of which a random half ("equal jitter",
 * so that many clients of a restarted daemon do not come back at once).
 */
function backoff(n, { initialDelay, maxDelay }) {
  const d = Math.min(maxDelay, initialDelay * 2 ** Math.min(n, 30));
  return d / 2 + Math.random() * (d / 2);
}

/**
 * A connection (pipe) to wsprd. Made by `connect`. It is an EventTarget:
 * `state` events (a StateEvent) tell when the pipe is lost and comes back,
 * `serveerror` events (a ServeErrorEvent) when a name could not be served
 * again after that.
 */
export class Runtime extends EventTarget {
  #ws = null;
  #nextId = 1;
  #nextServerId = 0;
  /** JavaScript's flows: odd id -> {onFinal, onStream, onStreamClose, onError, fail} */
  #flows = new Map();
  /** The daemon's flows that wait on a reply: even id -> request state */
  #daemonFlows = new Map();
  #servers = new Map();
  #closedWith = null;
  #resolveClosed;
  #trace;
  #maxBytes;
  #listeners = null;
  /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
  #state = 'open';
  /** Settings of reconnecting, or null. */
  #reconnect;
  #openSocket;
  /** Counts pipes: what belongs to a lost pipe is dropped. */
  #generation = 0;
  #attempts = 0;
  #retryTimer;
  /** Requests and calls waiting for the pipe to come back: {run, fail}. */
  #waiting = new Set();
  /** The token: a string, or a function that gives one (null: none). */
  #token = null;
  #renewTimer;
  /** The pipe's user: {names, expiresAt}, or null. */
  #identity = null;

  /** @internal Use connect(). */
  constructor(ws, url, options, openSocket) {
    super();
    this.#token = options.token ?? null;
    this.#trace = options.trace;
    this.#maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#reconnect = options.reconnect;
    this.#openSocket = openSocket;
    /** The websocket's URL. */
    this.url = url;
    /** Resolves, with the reason, when the runtime has closed for good. Never rejects. */
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#attach(ws);
  }

  /**
   * The pipe's user, from its token: `{names, expiresAt}` (the blessing
   * names `<daemon>/<origin>/<issuer>:<subject>` and when the token
   * expires, in ms since the epoch), or null without a token.
   */
  get identity() {
    return this.#identity;
  }

  /** @internal Presents the token (a fresh one from a token function) on a new pipe, first. */
  async _presentToken() {
    if (this.#token === null) return;
    let token = this.#token;
    if (typeof token === 'function') token = await token();
    checkToken('connect: the token', token);
    await this.#sendToken(token, 'token', true);
  }

  async #sendToken(token, what, now) {
    const got = await this._request(IN.token, { token }, { what, now });
    this.#identity = Object.freeze({ names: Object.freeze([...(got?.names ?? [])]), expiresAt: got?.expiresAt ?? 0 });
    this.#scheduleRenewal();
    return this.#identity;
  }

  /** With a token function: renews before the token expires. */
  #scheduleRenewal() {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    if (typeof this.#token !== 'function' || !this.#identity || this.#closedWith) return;
    const generation = this.#generation;
    this.#renewTimer = setTimeout(async () => {
      if (generation !== this.#generation || this.#closedWith) return;
      try {
        const token = checkToken('the token function', await this.#token());
        if (generation !== this.#generation || this.#closedWith) return;
        await this.#sendToken(token, 'renew the token', false);
      } catch (e) {
        try {
          this.dispatchEvent(new TokenErrorEvent(e));
        } catch {
          // A listener that throws is the listener's problem.
        }
      }
    }, renewDelay(this.#identity.expiresAt));
  }

  /**
   * Renews the pipe's token before it expires, with a token of the same
   * user (issuer and subject). Resolves with the pipe's identity
   * `{names, expiresAt}`; rejects (NoAccessError) if the daemon refuses
   * it, and the pipe keeps its token until it expires. The token is kept
   * for reconnects. Past a token's expiry, the daemon refuses the pipe's
   * requests and closes it.
   */
  async refreshToken(token) {
    checkToken('refreshToken', token);
    this.#checkOpen('refreshToken');
    if (this.#token === null) {
      throw new BadArgError('refreshToken: this runtime was connected without a token (connect(url, {token}))');
    }
    const identity = await this.#sendToken(token, 'refreshToken', false);
    if (typeof this.#token !== 'function') this.#token = token;
    return identity;
  }

  /** Whether the runtime has closed for good (close(), or a lost pipe without reconnect). */
  get isClosed() {
    return this.#closedWith !== null;
  }

  /** 'open', 'reconnecting' (waiting to try again), 'connecting' (trying) or 'closed'. */
  get state() {
    return this.#state;
  }

  /** @internal Whether there is a pipe to send on (open, or being set up again). */
  get _isConnected() {
    return this.#ws !== null && this.#closedWith === null;
  }

  /**
   * Closes the pipe for good. Every pending call, request and stream fails
   * with a ConnectionError; served objects stop being reachable (the daemon
   * unmounts them); contexts of calls in flight abort.
   */
  close() {
    if (this.#closedWith) return;
    const ws = this.#ws;
    this.#shutdown(new ConnectionError('the runtime was closed by close()'));
    try {
      ws?.close(1000, 'closed by the client');
    } catch {
      // Closing a socket that is already closing.
    }
  }

  #setState(state, error) {
    if (this.#state === state && state !== 'reconnecting') return;
    this.#state = state;
    try {
      this.dispatchEvent(new StateEvent(state, error));
    } catch {
      // A listener that throws is the listener's problem.
    }
  }

  #attach(ws) {
    this.#ws = ws;
    this.#generation++;
    const generation = this.#generation;
    this.#listeners = {
      message: (ev) => this.#onFrame(ev.data),
      close: (ev) => {
        if (generation === this.#generation) {
          this.#lost(new ConnectionError(`the connection to wsprd closed: ${closeReason(ev)}`));
        }
      },
      error: () => {},
    };
    for (const [k, f] of Object.entries(this.#listeners)) ws.addEventListener(k, f);
  }

  #detach() {
    const ws = this.#ws;
    if (!ws) return;
    for (const [k, f] of Object.entries(this.#listeners)) ws.removeEventListener(k, f);
    this.#ws = null;
    this.#generation++;
  }

  /** Everything that was in flight on the pipe fails with `err`. */
  #failInFlight(err) {
    const flows = [...this.#flows.values()];
    this.#flows.clear();
    for (const f of flows) f.fail(err);
    for (const req of [...this.#daemonFlows.values()]) this.#endRequest(req, err);
  }

  /** The pipe is gone (not by close()): reconnect, or close for good. */
  #lost(err) {
    if (this.#closedWith) return;
    if (!this.#reconnect) {
      this.#shutdown(err);
      return;
    }
    this.#detach();
    this.#failInFlight(err);
    this.#setState('reconnecting', err);
    this.#scheduleAttempt();
  }

  #scheduleAttempt() {
    const delay = backoff(this.#attempts++, this.#reconnect);
    this.#retryTimer = setTimeout(() => this.#attempt(), delay);
  }

  async #attempt() {
    this.#retryTimer = undefined;
    if (this.#closedWith) return;
    this.#setState('connecting', null);
    let ws;
    try {
      ws = await this.#openSocket();
    } catch (e) {
      if (this.#closedWith) return;
      this.#setState('reconnecting', e);
      this.#scheduleAttempt();
      return;
    }
    if (this.#closedWith) {
      try {
        ws.close(1000, 'closed by the client');
      } catch {
        // Already closing.
      }
      return;
    }
    this.#attach(ws);
    const generation = this.#generation;
    try {
      await this._presentToken();
    } catch (e) {
      // Refused (the daemon closes the pipe): try again later.
      if (generation === this.#generation && !this.#closedWith) {
        this.#detach();
        try {
          ws.close(1000, 'the token was refused');
        } catch {
          // Already closing.
        }
        this.#setState('reconnecting', e);
        this.#scheduleAttempt();
      }
      return;
    }
    await this.#serveAgain(generation);
    if (generation !== this.#generation || this.#closedWith) return;
    this.#attempts = 0;
    this.#setState('open', null);
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const w of waiting) w.run();
  }

  /** Serves every server again under each of its names, on a new pipe. */
  async #serveAgain(generation) {
    for (const state of [...this.#servers.values()]) {
      let served = false;
      for (const name of [...state.names]) {
        if (generation !== this.#generation || state.stopped) break;
        try {
          const endpoint = await this._request(IN.serve, { name, serverId: state.id }, { what: `serve ${name} again`, now: true });
          if (!served) state.endpoint = endpoint;
          served = true;
        } catch (e) {
          if (generation !== this.#generation) return;
          try {
            this.dispatchEvent(new ServeErrorEvent(state.server, name, e));
          } catch {
            // A listener that throws is the listener's problem.
          }
        }
      }
      // Stopped while it was being served again: stop it on the daemon too.
      if (served && state.stopped && generation === this.#generation) {
        this._request(IN.stopServer, state.id, { now: true }).catch(() => {});
      }
    }
  }

  /**
   * Runs `run` now if the pipe is open; else once it is back (reconnect),
   * unless the runtime closes first (`fail`). Returns a function that
   * withdraws it.
   */
  #whenOpen(run, fail) {
    if (this.#state === 'open') {
      run();
      return () => {};
    }
    const w = { run, fail };
    this.#waiting.add(w);
    return () => this.#waiting.delete(w);
  }

  // ---- sending

  #encode(id, type, data, what) {
    const body = data === undefined ? '' : `,"data":${toJson(what, data)}`;
    const text = `{"id":${id},"type":${type}${body}}`;
    if (text.length * 3 > this.#maxBytes) {
      const bytes = new TextEncoder().encode(text).length;
      if (bytes > this.#maxBytes) {
        throw new BadArgError(`${what} is ${bytes} bytes as JSON; the daemon takes at most ${this.#maxBytes}`);
      }
    }
    return text;
  }

  #sendText(text) {
    if (this.#trace) {
      try {
        this.#trace('send', JSON.parse(text));
      } catch {
        // A trace hook that throws is the hook's problem.
      }
    }
    this.#ws.send(text);
  }

  #checkOpen(what) {
    if (this.#closedWith) {
      throw new ConnectionError(`${what}: the runtime is closed (${this.#closedWith.message})`);
    }
  }

  /** Sends on a flow that is already open; false if there is no pipe. */
  #sendOn(id, type, data, what) {
    if (this.#closedWith || !this.#ws) return false;
    this.#sendText(this.#encode(id, type, data, what));
    return true;
  }

  /**
   * @internal Starts a flow of JavaScript's and resolves with its Final
   * (rejects with its Error). `onStream` gets Stream items. While the pipe
   * is being reconnected, it waits (within `timeout`) until it is back;
   * `now` sends at once (serving again on a new pipe).
   */
  _request(type, data, { what = typeNames.in[type], onStream, signal, timeout = 0, now = false } = {}) {
    return new Promise((resolve, reject) => {
      this.#checkOpen(what);
      if (signal?.aborted) {
        throw new AbortedError(`${what}: cancelled by its AbortSignal`, { cause: signal.reason });
      }
      if (now && !this._isConnected) {
        throw new ConnectionError(`${what}: the pipe to wsprd was lost`);
      }
      const ready = now || this.#state === 'open';
      let id;
      let text;
      if (ready) {
        // Bad data throws here, before anything is sent.
        id = this.#nextId;
        text = this.#encode(id, type, data, what);
        this.#nextId += 2;
      } else {
        // Bad data throws here, before anything waits.
        this.#encode(0, type, data, what);
      }
      let done = false;
      let withdraw = () => {};
      const settle = (f, v) => {
        if (done) return;
        done = true;
        clear();
        withdraw();
        f(v);
      };
      // Given up on locally: the flow is forgotten at once, and whatever
      // the daemon answers later is dropped as an answer to no flow.
      const giveUp = (err) => {
        if (id !== undefined) this.#flows.delete(id);
        settle(reject, err);
      };
      const clear = deadline(
        signal,
        timeout,
        (reason) => giveUp(new AbortedError(`${what}: cancelled by its AbortSignal`, { cause: reason })),
        () =>
          giveUp(
            new TimeoutError(`${what}: no answer within ${timeout} ms${this.#state === 'open' ? '' : ' (the pipe to wsprd is not back)'}`),
          ),
      );
      const start = () => {
        if (done) return;
        if (id === undefined) {
          id = this.#nextId;
          text = this.#encode(id, type, data, what);
          this.#nextId += 2;
        }
        this.#flows.set(id, {
          onFinal: (m) => settle(resolve, m),
          onError: (e) => settle(reject, e),
          onStream: (v) => !done && onStream?.(v),
          onStreamClose: () => {},
          fail: (e) => settle(reject, e),
        });
        this.#sendText(text);
      };
      if (ready) start();
      else withdraw = this.#whenOpen(start, (e) => settle(reject, e));
    });
  }
  call(name, method, args = [], options = {}) {
    checkName('call', name);
    if (typeof method !== 'string' || method === '') {
      throw new BadArgError(`call: the method must be a non-empty string, not ${describe(method)}`);
    }
    if (!Array.isArray(args)) throw new BadArgError(`call: args must be an array, not ${describe(args)}`);
    const o = checkOptions('call', options, ['timeout', 'signal', 'streaming', 'numOutArgs', 'serverBlessings']);
    return this.#startCall(name, method, args, {
      timeout: checkTimeout('call', o.timeout),
      signal: checkSignal('call', o.signal),
      streaming: !!o.streaming,
      numOutArgs: o.numOutArgs,
      serverBlessings: checkServerBlessings('call', o.serverBlessings),
      unwrap: (r) => r,
    });
  }

  #startCall(name, method, args, { timeout, signal, streaming, numOutArgs, serverBlessings, unwrap }) {
    const what = `${name}.${method}`;
    const data = { name, method, inArgs: args, numOutArgs: numOutArgs ?? 2, isStreaming: streaming, timeout };
    if (serverBlessings !== undefined) data.serverBlessings = serverBlessings;
    let stream;
    let id;
    let text;
    let early;
    if (this.#closedWith) {
      early = new ConnectionError(`${what}: the runtime is closed (${this.#closedWith.message})`);
    } else if (signal?.aborted) {
      early = new AbortedError(`${what}: cancelled by its AbortSignal before it started`, { cause: signal.reason });
    } else {
      // Bad arguments throw here, before anything is sent or waits.
      id = this.#nextId;
      text = this.#encode(id, IN.call, data, `the arguments of ${what}`);
      this.#nextId += 2;
    }
    // Items written while the call waits for the pipe go after it.
    let sent = false;
    const queued = [];
    const sendOrQueue = (type, v, itemWhat) => {
      const t = this.#encode(id, type, v, itemWhat);
      if (!sent) queued.push(t);
      else if (!this.#closedWith && this.#ws) this.#sendText(t);
    };
    if (streaming) {
      stream = new Stream(
        what,
        (v) => sendOrQueue(IN.streamValue, v, `a stream item of ${what}`),
        () => sendOrQueue(IN.streamClose, undefined, what),
      );
    }
    const promise = new Promise((resolve, reject) => {
      if (early) {
        stream?.[FAIL](early);
        stream?.[FINISH](early.message);
        reject(early);
        return;
      }
      let done = false;
      let withdraw = () => {};
      let waitTimer;
      let waitingSince;
      const finish = (err, results) => {
        if (done) return;
        done = true;
        clear();
        withdraw();
        clearTimeout(waitTimer);
        if (stream) {
          stream[FINISH](err ? `the call failed: ${err.message}` : 'the call has finished');
          if (err) stream[FAIL](err);
          else stream[CLOSE]();
        }
        if (err) reject(err);
        else resolve(unwrap(results));
      };
      const clear = deadline(
        signal,
        0,
        (reason) => {
          // Tell the daemon; its Aborted reply ends the flow.
          if (sent) this.#sendOn(id, IN.cancel, undefined, what);
          finish(new AbortedError(`${what}: cancelled by its AbortSignal`, { cause: reason }));
        },
        () => {},
      );
      const start = () => {
        if (done) return;
        let t = text;
        if (waitingSince !== undefined && timeout > 0) {
          // What is left of the call's own deadline after waiting.
          const left = Math.max(1, Math.round(timeout - (Date.now() - waitingSince)));
          t = this.#encode(id, IN.call, { ...data, timeout: left }, `the arguments of ${what}`);
        }
        this.#flows.set(id, {
          onFinal: (m) => finish(null, Array.isArray(m) ? m : [m]),
          onError: (e) => finish(e),
          onStream: (v) => !done && stream?.[PUSH](v),
          onStreamClose: () => !done && stream?.[CLOSE](),
          fail: (e) => finish(e),
        });
        sent = true;
        this.#sendText(t);
        for (const q of queued.splice(0)) this.#sendText(q);
      };
      if (this.#state === 'open') {
        start();
        return;
      }
      // The pipe is being reconnected: wait for it, within the call's
      // own timeout.
      waitingSince = Date.now();
      withdraw = this.#whenOpen(start, (e) => finish(e));
      if (timeout > 0) {
        waitTimer = setTimeout(
          () => finish(new TimeoutError(`${what}: no answer within ${timeout} ms (the pipe to wsprd is not back)`)),
          timeout,
        );
      }
    });
    if (streaming) return new Call(promise, stream);
    return promise;
  }

  /** The signature of the object named `name`: `{method: {inArgs, numOutArgs, isStreaming}}`. */
  async signature(name, options) {
    checkName('signature', name);
    const o = checkOptions('signature', options, ['timeout', 'signal']);
    const sig = await this._request(
      IN.signature,
      { name },
      { what: `signature of ${name}`, timeout: checkTimeout('signature', o.timeout), signal: checkSignal('signature', o.signal) },
    );
    if (!isPlainObject(sig)) throw new InternalError(`signature of ${name}: the daemon sent ${describe(sig)}`);
    return sig;
  }

  /**
   * Fetches the signature of `name` and returns a stub with one method per
   * method of the object, lowerCamelCase. A stub method takes exactly the
   * method's arguments, and optionally one more: the call's options
   * `{timeout, signal}`. It returns a Promise of the result (one value, or
   * an array for several); a streaming method returns a Call.
   */
  async bindTo(name, options) {
    checkName('bindTo', name);
    const o = checkOptions('bindTo', options, ['timeout', 'signal']);
    const sig = await this.signature(name, o);
    const stub = {};
    for (const [method, m] of Object.entries(sig)) {
      const inArgs = Array.isArray(m?.inArgs) ? m.inArgs : [];
      const arity = inArgs.length;
      const what = `${name}.${method}`;
      stub[method] = (...args) => {
        let callOptions = {};
        if (args.length === arity + 1 && (args[arity] === undefined || isPlainObject(args[arity]))) {
          callOptions = checkOptions(what, args.pop(), ['timeout', 'signal', 'serverBlessings']);
        } else if (args.length !== arity) {
          const names = inArgs.length > 0 ? ` (${inArgs.join(', ')})` : '';
          throw new BadArgError(
            `${what} takes ${arity} argument${arity === 1 ? '' : 's'}${names}, got ${args.length}; call options go last as {timeout, signal, serverBlessings}`,
          );
        }
        return this.#startCall(name, method, args, {
          timeout: checkTimeout(what, callOptions.timeout),
          signal: checkSignal(what, callOptions.signal),
          serverBlessings: checkServerBlessings(what, callOptions.serverBlessings),
          streaming: !!m.isStreaming,
          numOutArgs: m.numOutArgs,
          unwrap: (r) => unwrapResults(r, m.numOutArgs),
        });
      };
    }
    return stub;
  }

  // ---- namespace

  /** Names matching `pattern` (`*` one element, `...` any depth): [{name, servers: [{server, ttl}]}]. */
  async glob(pattern, options) {
    if (typeof pattern !== 'string') throw new BadArgError(`glob: the pattern must be a string, not ${describe(pattern)}`);
    const o = checkOptions('glob', options, ['timeout', 'signal']);
    const entries = [];
    await this._request(
      IN.namespace,
      { method: 'glob', pattern },
      {
        what: `glob ${pattern}`,
        onStream: (e) => entries.push(e),
        timeout: checkTimeout('glob', o.timeout),
        signal: checkSignal('glob', o.signal),
      },
    );
    return entries;
  }

  /** The rooted names `name` resolves to. */
  async resolve(name, options) {
    checkName('resolve', name);
    const o = checkOptions('resolve', options, ['timeout', 'signal']);
    return this._request(
      IN.namespace,
      { method: 'resolve', name },
      { what: `resolve ${name}`, timeout: checkTimeout('resolve', o.timeout), signal: checkSignal('resolve', o.signal) },
    );
  }

  /**
   * Mounts `server` (a rooted name or endpoint) under `name` for `ttl`
   * seconds (default 60). The mount table records this page's blessing
   * names as the server's, or `options.serverBlessings` (the names the
   * server proves, when it is another's); callers refuse a server that
   * does not prove them. A name another party made is refused
   * (NoAccessError).
   */
  async mount(name, server, ttl = 60, options) {
    checkName('mount', name);
    checkName('mount (server)', server);
    if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
      throw new BadArgError(`mount: ttl must be a number of seconds > 0, not ${describe(ttl)}`);
    }
    const o = checkOptions('mount', options, ['serverBlessings']);
    const data = { method: 'mount', name, server, ttl };
    const serverBlessings = checkServerBlessings('mount', o.serverBlessings);
    if (serverBlessings !== undefined) data.serverBlessings = serverBlessings;
    await this._request(IN.namespace, data, { what: `mount ${name}` });
  }

  /** Unmounts `server` from `name`; without `server`, every server of `name`. */
  async unmount(name, server = '') {
    checkName('unmount', name);
    if (typeof server !== 'string') throw new BadArgError(`unmount: the server must be a string, not ${describe(server)}`);
    await this._request(IN.namespace, { method: 'unmount', name, server }, { what: `unmount ${name}` });
  }

  // ---- permissions (an extension of the namespace message: docs/security.md)

  /**
   * Who may do what to `name`: `{permissions: {Resolve, Read, Mount,
   * Create, Admin: [blessing patterns]}, version}` (every tag, as in
   * force there). `""` is the root of the name space.
   */
  async getPermissions(name, options) {
    if (typeof name !== 'string') throw new BadArgError(`getPermissions: the name must be a string, not ${describe(name)}`);
    const o = checkOptions('getPermissions', options, ['timeout', 'signal']);
    const got = await this._request(
      IN.namespace,
      { method: 'getPermissions', name },
      { what: `getPermissions ${name}`, timeout: checkTimeout('getPermissions', o.timeout), signal: checkSignal('getPermissions', o.signal) },
    );
    if (!isPlainObject(got) || !isPlainObject(got.permissions) || typeof got.version !== 'string') {
      throw new InternalError(`getPermissions ${name}: the daemon sent ${describe(got)}`);
    }
    return got;
  }

  /**
   * Sets who may do what to `name` (made, as this page's, if missing):
   * `permissions` is `{Tag: [blessing patterns]}`; tags left out are the
   * parent's. `options.version` (from getPermissions) refuses the change
   * if someone changed them since. Needs Admin there.
   */
  async setPermissions(name, permissions, options) {
    if (typeof name !== 'string') throw new BadArgError(`setPermissions: the name must be a string, not ${describe(name)}`);
    if (!isPlainObject(permissions) || !Object.values(permissions).every((l) => Array.isArray(l) && l.every((p) => typeof p === 'string'))) {
      throw new BadArgError(`setPermissions: permissions must be {Tag: [blessing patterns]}, not ${describe(permissions)}`);
    }
    const o = checkOptions('setPermissions', options, ['version']);
    if (o.version !== undefined && typeof o.version !== 'string') {
      throw new BadArgError(`setPermissions: version must be a string, not ${describe(o.version)}`);
    }
    await this._request(
      IN.namespace,
      { method: 'setPermissions', name, permissions, version: o.version ?? '' },
      { what: `setPermissions ${name}` },
    );
  }

  /**
   * Deletes `name` (servers, permissions and all) so that anyone may make
   * it again; with `{subtree: true}`, the names below it too (else there
   * must be none). Needs Admin of every name deleted.
   */
  async delete(name, options) {
    checkName('delete', name);
    const o = checkOptions('delete', options, ['subtree']);
    await this._request(
      IN.namespace,
      { method: 'delete', name, deleteSubtree: !!o.subtree },
      { what: `delete ${name}` },
    );
  }

  // ---- serving

  /**
   * Serves `target` under `name` and resolves with the Server. `target` is
   * either a dispatcher, `(suffix, method) => ({service, authorizer,
   * signature, cacheable})` (or a Promise of it; null: no such object), or
   * an object served as a leaf (suffix "" only) whose lookups are cacheable.
   * Options: `signature` (explicit signature entries, for an object) and
   * `authorizer` (for an object: `(ctx) => undefined | true` to allow, or a
   * Promise of it; anything else refuses: false, an Error (its id, or
   * NoAccess), a throw, a rejection, any other value).
   */
  async serve(name, target, options) {
    checkName('serve', name);
    const o = checkOptions('serve', options, ['signature', 'authorizer']);
    let dispatcher;
    const state = new ServerState(this.#nextServerId, null);
    if (typeof target === 'function') {
      if (o.signature !== undefined || o.authorizer !== undefined) {
        throw new BadArgError('serve: with a dispatcher, return signature and authorizer from the dispatcher');
      }
      dispatcher = target;
    } else if (target !== null && typeof target === 'object') {
      if (o.authorizer !== undefined && typeof o.authorizer !== 'function') {
        throw new BadArgError(`serve: authorizer must be a function, not ${describe(o.authorizer)}`);
      }
      // Bad signatures fail here, before anything is served.
      state.signatureFor(target, o.signature);
      dispatcher = leafDispatcher(name, target, o.authorizer, o.signature);
    } else {
      throw new BadArgError(`serve: serve a dispatcher function or an object, not ${describe(target)}`);
    }
    this.#checkOpen('serve');
    state.dispatcher = dispatcher;
    this.#nextServerId++;
    this.#servers.set(state.id, state);
    try {
      state.endpoint = await this._request(IN.serve, { name, serverId: state.id }, { what: `serve ${name}` });
    } catch (e) {
      // The daemon drops a server whose first name failed.
      this.#servers.delete(state.id);
      state.stopped = true;
      throw e;
    }
    state.names.push(name);
    return new Server(this, state);
  }

  /** @internal The server has stopped: its requests end. */
  _dropServer(state, err) {
    state.stopped = true;
    this.#servers.delete(state.id);
    for (const req of [...state.requests]) this.#endRequest(req, err);
  }

  // ---- receiving

  #onFrame(data) {
    if (typeof data !== 'string') return;
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (m === null || typeof m !== 'object' || typeof m.id !== 'number' || typeof m.type !== 'number') return;
    if (this.#trace) {
      try {
        this.#trace('recv', m);
      } catch {
        // See #sendText.
      }
    }
    if (this.#closedWith) return;
    if (m.id % 2 === 1) this.#onReply(m);
    else if (m.id > 0) this.#onDaemonFlow(m);
    // Errors on id 0 belong to no flow; the trace hook sees them.
  }

  #onReply({ id, type, message }) {
    const flow = this.#flows.get(id);
    if (!flow) return;
    switch (type) {
      case OUT.final:
        this.#flows.delete(id);
        flow.onFinal(message);
        break;
      case OUT.error:
        this.#flows.delete(id);
        flow.onError(errorFromWire(message));
        break;
      case OUT.stream:
        flow.onStream(message);
        break;
      case OUT.streamClose:
        flow.onStreamClose();
        break;
      default:
        break;
    }
  }

  #onDaemonFlow({ id, type, message }) {
    switch (type) {
      case OUT.lookup:
        this.#onLookup(id, message);
        return;
      case OUT.serverRequest:
        this.#onServerRequest(id, message);
        return;
      case OUT.authRequest:
        this.#onAuthRequest(id, message);
        return;
      default:
        break;
    }
    const req = this.#daemonFlows.get(id);
    if (!req) return;
    switch (type) {
      case OUT.stream:
        req.stream?.[PUSH](message);
        break;
      case OUT.streamClose:
        req.stream?.[CLOSE]();
        break;
      case OUT.cancel:
        this.#endRequest(req, new AbortedError(`${req.method}: the caller cancelled (or its deadline passed)`));
        break;
      default:
        break;
    }
  }

  /**
   * Replies on one of the daemon's flows of pipe `generation`; a reply
   * that cannot be sent becomes an error reply, and one for a pipe that
   * was lost since is dropped.
   */
  #reply(id, type, data, what, generation = this.#generation) {
    if (this.#closedWith || !this.#ws || generation !== this.#generation) return;
    let text;
    try {
      text = this.#encode(id, type, data, what);
    } catch (e) {
      const err = { id: errorIds.internal, msg: e.message };
      text = this.#encode(id, type, type === IN.serverResponse ? { results: [], err } : { err }, what);
    }
    this.#sendText(text);
  }

  async #onLookup(id, message) {
    const generation = this.#generation;
    const { serverId, suffix = '', method = '' } = message ?? {};
    const server = this.#servers.get(serverId);
    const what = 'a lookup reply';
    if (!server || server.stopped) {
      this.#reply(id, IN.lookupResponse, { handle: -1, err: { id: errorIds.noExist, msg: `no server ${serverId} on this pipe` } }, what);
      return;
    }
    let found;
    try {
      found = await server.dispatcher(suffix, method);
    } catch (e) {
      this.#reply(id, IN.lookupResponse, { err: errorToWire(e, errorIds.unknown) }, what, generation);
      return;
    }
    if (found === null || found === undefined) {
      this.#reply(id, IN.lookupResponse, { handle: -1, hasAuthorizer: false, signature: {}, err: null, cacheable: false }, what, generation);
      return;
    }
    let reply;
    try {
      if (typeof found !== 'object' || found.service === null || typeof found.service !== 'object') {
        throw new InternalError(`the dispatcher returned ${describe(found)} for suffix ${JSON.stringify(suffix)}; expected {service, authorizer}`);
      }
      const { service, authorizer, signature, cacheable = false } = found;
      if (authorizer !== undefined && authorizer !== null && typeof authorizer !== 'function') {
        throw new InternalError(`the dispatcher's authorizer for suffix ${JSON.stringify(suffix)} is not a function`);
      }
      const sig = server.signatureFor(service, signature);
      const handle = server.handleFor(service, authorizer ?? null, sig, !!cacheable);
      reply = { handle, hasAuthorizer: typeof authorizer === 'function', signature: sig, err: null, cacheable: !!cacheable };
    } catch (e) {
      reply = { err: errorToWire(e, errorIds.internal) };
    }
    this.#reply(id, IN.lookupResponse, reply, what, generation);
  }

  /**
   * The context a method or authorizer sees (a {@link CallContext}). For a
   * request, `signal` is made on first use only (most methods never look
   * at it), already aborted if the request has ended by then.
   */
  #context(message, req) {
    const c = message?.context ?? {};
    const ctx = new CallContext(c.name ?? '', c.suffix ?? '', c.remoteId ?? { handle: 0, names: [] }, req);
    if (typeof c.timeout === 'number') ctx.timeout = c.timeout;
    return ctx;
  }

  async #onAuthRequest(id, message) {
    const generation = this.#generation;
    const server = this.#servers.get(message?.serverId);
    const entry = server?.handles.get(message?.handle);
    let err = null;
    if (!entry) {
      err = { id: errorIds.noExist, msg: `no object ${message?.handle} on server ${message?.serverId}` };
    } else if (entry.authorizer) {
      // Fails closed: only undefined or true allows (authorizerVerdict).
      try {
        err = authorizerVerdict(await entry.authorizer(this.#context(message, undefined)));
      } catch (e) {
        err = errorToWire(e, errorIds.noAccess);
      }
    }
    this.#reply(id, IN.authResponse, { err }, 'an authorization reply', generation);
  }

  async #onServerRequest(id, message) {
    const { serverId, handle, method = '', args = [] } = message ?? {};
    const server = this.#servers.get(serverId);
    const entry = server?.handles.get(handle);
    // Only the methods served: the signature holds exactly those (a
    // request for constructor or toString finds nothing).
    const sig = entry && Object.hasOwn(entry.signature, method) ? entry.signature[method] : undefined;
    const fn = sig ? entry.service[method] : undefined;
    if (!entry || typeof fn !== 'function' || !sig) {
      const msg = !entry ? `no object ${handle} on server ${serverId}` : `the object has no method ${method}`;
      this.#reply(id, IN.serverResponse, { results: [], err: { id: errorIds.noExist, msg } }, 'a server response');
      return;
    }
    const req = { id, method, server, entry, controller: undefined, abortReason: undefined, stream: undefined, ended: false };
    if (sig.isStreaming) {
      req.stream = new Stream(
        `the stream of ${method}`,
        (v) => {
          if (req.ended) throw new BadArgError(`the stream of ${method}: the call has ended`);
          this.#sendOn(id, IN.streamValue, v, `a stream item of ${method}`);
        },
        () => !req.ended && this.#sendOn(id, IN.streamClose, undefined, method),
      );
    }
    this.#daemonFlows.set(id, req);
    server.requests.add(req);
    entry.active++;
    const ctx = this.#context(message, req);
    if (req.stream) ctx.stream = req.stream;
    let response;
    try {
      const ret = await fn.call(entry.service, ctx, ...(Array.isArray(args) ? args : []));
      // An Error returned fails the call as one thrown does.
      response =
        ret instanceof Error
          ? { results: [], err: errorToWire(ret, errorIds.unknown) }
          : { results: wrapResults(method, ret, sig.numOutArgs), err: null };
    } catch (e) {
      response = { results: [], err: errorToWire(e, errorIds.unknown) };
    }
    if (req.ended) return; // Cancelled, stopped, or the pipe closed: nobody waits.
    this.#endRequest(req, null);
    this.#reply(id, IN.serverResponse, response, `the results of ${method}`);
  }

  /** A server request is over: answered (err null), or cancelled. */
  #endRequest(req, err) {
    if (req.ended) return;
    req.ended = true;
    this.#daemonFlows.delete(req.id);
    req.server.requests.delete(req);
    req.entry.active--;
    if (req.stream) {
      req.stream[FINISH](err ? err.message : 'the call has ended');
      if (err) req.stream[FAIL](err);
      else req.stream[CLOSE]();
    }
    if (err) {
      req.abortReason = err;
      req.controller?.abort(err);
    }
  }

  /** Closes for good: everything pending and waiting fails with `err`. */
  #shutdown(err) {
    if (this.#closedWith) return;
    this.#closedWith = err;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#renewTimer);
    this.#detach();
    this.#failInFlight(err);
    for (const s of [...this.#servers.values()]) this._dropServer(s, err);
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const w of waiting) w.fail(err);
    this.#setState('closed', err);
    this.#resolveClosed(err);
  }
}

// ------------------------------------------------------------- connect

const CLOSE_CODES = {
  1000: 'closed normally',
  1001: 'the daemon is going away',
  1006: 'lost without a close frame: the daemon died or the network failed',
  1008: 'closed by the daemon\'s policy (a token refused, missing or expired)',
  1009: 'a message was larger than the daemon takes',
  1011: 'the daemon hit an internal error',
};

function closeReason(ev) {
  const what = CLOSE_CODES[ev.code] ?? 'closed';
  return `code ${ev.code}, ${what}${ev.reason ? ` (${ev.reason})` : ''}`;
}

function normalizeUrl(url) {
  if (url === undefined) {
    const loc = globalThis.location;
    if (!loc || !/^https?:$/.test(loc.protocol)) {
      throw new BadArgError('connect: give the daemon\'s URL, such as ws://127.0.0.1:8124/ws');
    }
    return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
  }
  let u;
  try {
    u = new URL(String(url));
  } catch {
    throw new BadArgError(`connect: ${describe(url)} is not a URL; use one such as ws://127.0.0.1:8124/ws`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new BadArgError(`connect: ${describe(url)} is not a ws://, wss://, http:// or https:// URL`);
  }
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u.href;
}

/**
 * Opens a pipe to wsprd. `url` is the websocket URL (`ws://host:port/ws`;
 * an http URL of the daemon works too; in a page served by the daemon it
 * may be left out). Options: `WebSocket` (a constructor, where there is no
 * global one), `timeout` (ms to wait for a connection, default 10000),
 * `maxMessageBytes` (the daemon's --max-message-bytes, default 1 MiB),
 * `trace(direction, message)` (sees every message: 'send' or 'recv'),
 * `reconnect` (true, or `{initialDelay, maxDelay}` in ms: when the pipe is
 * lost, open a new one with exponential back-off and serve every server
 * again; default: on for `connect()` with no URL, in a page, off
 * otherwise), `token` (the user's token, a JWT of an issuer the daemon
 * trusts, or a function that returns one, or a Promise of one: it is sent
 * first on every pipe, and a function's is renewed before it expires; see
 * `refreshToken`). The first connection is not retried: if it fails, or
 * its token is refused, connect rejects.
 */
export async function connect(url, options) {
  const o = checkOptions('connect', options, ['WebSocket', 'timeout', 'maxMessageBytes', 'trace', 'reconnect', 'token']);
  if (o.token !== undefined && typeof o.token !== 'function') checkToken('connect', o.token);
  const href = normalizeUrl(url);
  const WS = o.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== 'function') {
    throw new BadArgError(
      'connect: there is no WebSocket here; pass one as options.WebSocket (in Node 20, run node with --experimental-websocket)',
    );
  }
  if (o.trace !== undefined && typeof o.trace !== 'function') {
    throw new BadArgError(`connect: trace must be a function, not ${describe(o.trace)}`);
  }
  if (o.maxMessageBytes !== undefined && !(Number.isInteger(o.maxMessageBytes) && o.maxMessageBytes > 0)) {
    throw new BadArgError(`connect: maxMessageBytes must be a positive integer, not ${describe(o.maxMessageBytes)}`);
  }
  const timeout = o.timeout === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : checkTimeout('connect', o.timeout);
  const reconnect = checkReconnect(o.reconnect ?? url === undefined);
  const open = () => openSocket(WS, href, timeout);
  const ws = await open();
  const rt = new Runtime(ws, href, { trace: o.trace, maxMessageBytes: o.maxMessageBytes, reconnect, token: o.token }, open);
  try {
    await rt._presentToken();
  } catch (e) {
    rt.close();
    throw e;
  }
  return rt;
}

/** Opens a websocket to `href`; resolves once it is open. */
async function openSocket(WS, href, timeout) {
  let ws;
  try {
    ws = new WS(href);
  } catch (e) {
    throw new BadArgError(`connect: cannot open a websocket to ${href}: ${e.message}`, { cause: e });
  }
  await new Promise((resolve, reject) => {
    let timer;
    const done = (err) => {
      clearTimeout(timer);
      ws.removeEventListener('open', onOpen);
      ws.removeEventListener('close', onClose);
      ws.removeEventListener('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onOpen = () => done(null);
    // Browsers follow 'error' with 'close'; some WebSockets (Node 20's) do not.
    const onError = (ev) => {
      const detail = typeof ev?.message === 'string' && ev.message ? ` (${ev.message})` : '';
      done(
        new ConnectionError(
          `cannot connect to ${href}${detail}: is wsprd running there, and does its --allowed-origins take this page?`,
        ),
      );
      try {
        ws.close();
      } catch {
        // Never opened.
      }
    };
    const onClose = (ev) => done(new ConnectionError(`cannot connect to ${href}: ${closeReason(ev)}`));
    ws.addEventListener('open', onOpen);
    ws.addEventListener('close', onClose);
    ws.addEventListener('error', onError);
    if (timeout > 0) {
      timer = setTimeout(() => {
        done(new TimeoutError(`cannot connect to ${href}: no answer within ${timeout} ms`));
        try {
          ws.close();
        } catch {
          // Not open yet.
        }
      }, timeout);
    }
  });
  return ws;
}
