// Type declarations for wspr.js. See docs/javascript.md for the tutorial.

/** Any value that travels as JSON. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// ----------------------------------------------------------------- errors

/** The protocol's error ids (docs/protocol.md, section 4). */
export declare const errorIds: {
  readonly aborted: 'veyron2/verror.Aborted';
  readonly badArg: 'veyron2/verror.BadArg';
  readonly badProtocol: 'veyron2/verror.BadProtocol';
  readonly exists: 'veyron2/verror.Exists';
  readonly internal: 'veyron2/verror.Internal';
  readonly noAccess: 'veyron2/verror.NoAccess';
  readonly noExist: 'veyron2/verror.NoExist';
  readonly timeout: 'veyron2/verror.Timeout';
  readonly unknown: 'veyron2/verror.Unknown';
};

/** The error value of the wire. */
export interface WireError {
  id: string;
  msg: string;
}

/** An error with an id: one of `errorIds`, or an application's own (`app.DivideByZero`). */
export declare class WsprError extends Error {
  constructor(id: string, message: string, options?: { cause?: unknown });
  readonly id: string;
  toJSON(): WireError;
}
/** The flow was cancelled, the server stopped, or the pipe closed. */
export declare class AbortedError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
  readonly id: 'veyron2/verror.Aborted';
}
/** Bad arguments, a wrong number of arguments, a malformed payload. */
export declare class BadArgError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** A frame the daemon could not read. */
export declare class BadProtocolError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** A name or id already in use. */
export declare class ExistsError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** A fault inside the daemon, or a reply that cannot be decoded. */
export declare class InternalError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** Refused by an authorizer. */
export declare class NoAccessError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** No such name, server, object or method. */
export declare class NoExistError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** A deadline passed. */
export declare class TimeoutError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** Anything else. */
export declare class UnknownError extends WsprError {
  constructor(message: string, options?: { cause?: unknown });
}
/** The pipe to wsprd is gone: closed by close(), by the daemon, or lost. Its id is Aborted. */
export declare class ConnectionError extends AbortedError {}

/** The Error for an error value of the wire; the contract's ids get their own classes. */
export declare function errorFromWire(value: unknown): WsprError;

/** Names of the message types, for logs. */
export declare const typeNames: {
  /** Types JavaScript sends: `typeNames.in[3]` is 'streamValue'. */
  readonly in: Readonly<Record<number, string>>;
  /** Types the daemon sends: `typeNames.out[5]` is 'dispatcherLookup'. */
  readonly out: Readonly<Record<number, string>>;
};

// --------------------------------------------------------------- streams

/**
 * One side of a streaming flow: `write` and `end` send; `for await` reads
 * what the other side sends until it ends its side. Reading throws the
 * flow's error if the flow fails.
 */
export declare class Stream<In = Json, Out = Json> implements AsyncIterableIterator<In> {
  private constructor();
  /** Sends one item. Throws BadArgError after end(), after the flow is over, or for a value with no JSON. */
  write(value: Out): void;
  /** Ends this side; the other side's reading ends. Harmless when repeated. */
  end(): void;
  /** Whether end() was called or the flow is over. */
  readonly writableEnded: boolean;
  next(): Promise<IteratorResult<In, undefined>>;
  /** Stops reading: later items are dropped. */
  return(): Promise<IteratorResult<In, undefined>>;
  [Symbol.asyncIterator](): Stream<In, Out>;
}

/** A streaming call: awaitable (its result) and with a stream both ways. */
export declare class Call<T = unknown> implements PromiseLike<T> {
  private constructor();
  readonly stream: Stream;
  then<A = T, B = never>(
    onFulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B>;
  catch<B = never>(onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<T | B>;
  finally(onFinally?: (() => void) | null): Promise<T>;
}

// ------------------------------------------------------------ signatures

/** One method's signature, as the wire has it. */
export interface MethodSignature {
  /** Argument names. */
  inArgs: string[];
  /** Results plus the error slot: 2 for a method with one result. */
  numOutArgs: number;
  isStreaming: boolean;
}

/** An object's signature: lowerCamelCase method names. */
export type Signature = Record<string, MethodSignature>;

/** Explicit signature entries, whole or in part: `{sum: {isStreaming: true}}`. */
export type SignatureHints = Record<string, Partial<MethodSignature>>;

/**
 * The signature of a service object: one entry per function (own or
 * inherited, not starting with `_`), its first parameter (the context) left
 * out; `explicit` gives or overrides entries.
 */
export declare function signatureOf(service: object, explicit?: SignatureHints): Signature;

// ----------------------------------------------------------------- calls

/** Options of one call; a stub method takes them as one extra, last argument. */
export interface CallOptions {
  /** Milliseconds; the call fails with TimeoutError when they pass. */
  timeout?: number;
  /** Cancels the call: it fails with AbortedError (whose `cause` is the signal's reason). */
  signal?: AbortSignal;
  /**
   * Blessing patterns the server must prove a name matching (besides what
   * the name space recorded for it); otherwise nothing is sent to it and
   * the call fails with NoAccessError.
   */
  serverBlessings?: string[];
}

/**
 * A stub from `bindTo`: one function per method. A method takes exactly its
 * arguments, optionally followed by CallOptions; it returns a Promise of
 * its result (one value; an array for several; undefined for none), or a
 * Call for a streaming method. A wrong argument count throws BadArgError.
 */
export type Stub = Record<string, (...args: any[]) => any>;

export interface RawCallOptions extends CallOptions {
  /** The method streams: `call` returns a Call. */
  streaming?: boolean;
  /** Results plus the error slot (default 2). */
  numOutArgs?: number;
}

export interface RequestOptions {
  /** Milliseconds to wait for the daemon's answer. */
  timeout?: number;
  signal?: AbortSignal;
}

/** A name space entry. */
export interface GlobEntry {
  name: string;
  /** `blessings`: the names the server must prove, as the mount table recorded them. */
  servers: { server: string; ttl: number; blessings?: string[] }[];
}

/** The permission tags of a name. */
export type Tag = 'Resolve' | 'Read' | 'Mount' | 'Create' | 'Admin';

/** Blessing patterns per tag. */
export type Permissions = Partial<Record<Tag, string[]>>;

export interface MountOptions {
  /** The blessing names the server proves (default: this page's own names). */
  serverBlessings?: string[];
}

// ---------------------------------------------------------------- serving

/** What a served method, and an authorizer, learn about the call. */
export interface Context {
  /** The name the caller used. */
  name: string;
  /** What is left of the name after the server: "" for the server's own name. */
  suffix: string;
  /** The caller's blessing names. */
  remoteId: { handle: number; names: string[] };
  /** Milliseconds left of the caller's deadline, if it has one. */
  timeout?: number;
}

/** The context of a served method. */
export interface ServerContext extends Context {
  /** Aborts when the caller cancels, its deadline passes, the server stops or the pipe closes. */
  signal: AbortSignal;
  /** For a streaming method: read the caller's items, write your own. */
  stream?: Stream;
}

/**
 * Allows a call only by returning `undefined` or `true` (or a Promise of
 * them). Anything else refuses: `false` or any other value (NoAccess), an
 * Error returned or thrown, a rejection (the error's id, NoAccess if it has
 * none).
 */
export type Authorizer = (ctx: Context) => unknown;

/** What a dispatcher answers for a suffix and method. */
export interface Lookup {
  /** The object whose methods serve the call. */
  service: object;
  authorizer?: Authorizer | null;
  /** Explicit signature entries, as for serve's `signature` option. */
  signature?: SignatureHints;
  /** The daemon may reuse this answer for the same suffix and method (default false). */
  cacheable?: boolean;
}

/** Finds the object for a call: null or undefined means there is none (NoExist); throwing refuses the call with that error. */
export type Dispatcher = (suffix: string, method: string) => Lookup | null | undefined | Promise<Lookup | null | undefined>;

export interface ServeOptions {
  /** For an object: explicit signature entries. */
  signature?: SignatureHints;
  /** For an object: its authorizer. */
  authorizer?: Authorizer;
}

/** A server whose objects live in this runtime. */
export declare class Server {
  private constructor();
  /**
   * `@w1@host:port@rid@s@@`; `/<endpoint>/<suffix>` reaches the server
   * directly. A runtime that reconnects serves it again at a new endpoint.
   */
  readonly endpoint: string;
  /** The names it is served under (a copy). */
  readonly names: string[];
  readonly serverId: number;
  readonly stopped: boolean;
  /** Serves it under one more name (ExistsError if it already has it). */
  addName(name: string): Promise<void>;
  /** Stops serving it under `name`; it goes on under its other names (NoExistError: not one of its names). */
  removeName(name: string): Promise<void>;
  /** Unmounts and stops it; calls in flight are cancelled. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------- runtime

/** How a runtime reconnects: waits doubling from `initialDelay` to `maxDelay` ms, each a random half to all of that. */
export interface ReconnectOptions {
  /** Milliseconds before the first attempt (default 250). */
  initialDelay?: number;
  /** The cap of the wait between attempts (default 10000). */
  maxDelay?: number;
}

export interface ConnectOptions {
  /** A WebSocket constructor, where there is no global one. */
  WebSocket?: new (url: string) => WebSocket;
  /** Milliseconds to wait for a connection (default 10000; 0: no limit). */
  timeout?: number;
  /**
   * When the pipe is lost, open a new one (exponential back-off with
   * jitter, capped) and serve every server again under all its names.
   * Calls in flight fail with ConnectionError at once; new calls wait,
   * within their timeout, for the pipe to come back. Default: on for
   * `connect()` with no URL in a page, off otherwise. The first connection
   * is not retried.
   */
  reconnect?: boolean | ReconnectOptions;
  /** The daemon's --max-message-bytes (default 1 MiB): larger messages throw BadArgError instead of closing the pipe. */
  maxMessageBytes?: number;
  /** Sees every message on the pipe. */
  trace?: (direction: 'send' | 'recv', message: { id: number; type: number; data?: Json; message?: Json }) => void;
  /**
   * The user's token (a JWT of an issuer the daemon trusts), or a function
   * that gives one: sent first on every pipe, so that the pipe is its
   * user's (`<daemon>/<origin>/<issuer>:<subject>`). A function's token is
   * renewed before it expires (failures: the `tokenerror` event); a
   * string's with `refreshToken`. A refused token rejects connect.
   */
  token?: string | (() => string | Promise<string>);
}

/** The pipe's user, from its token. */
export interface TokenIdentity {
  /** Its blessing names: `<daemon>/<origin>/<issuer>:<subject>`. */
  readonly names: readonly string[];
  /** When the token expires, ms since the epoch. */
  readonly expiresAt: number;
}

/** Where a runtime's pipe stands. */
export type RuntimeState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A runtime's `state` event. */
export declare class StateEvent extends Event {
  private constructor();
  readonly type: 'state';
  /** The new state. */
  readonly state: RuntimeState;
  /** Why the pipe was lost, closed, or could not be opened again; null otherwise. */
  readonly error: Error | null;
}

/** A runtime's `serveerror` event: a server's name could not be served again after a reconnect. */
export declare class ServeErrorEvent extends Event {
  private constructor();
  readonly type: 'serveerror';
  readonly server: Server;
  readonly name: string;
  readonly error: Error;
}

/** A runtime's `tokenerror` event: a token function failed, or the daemon refused its renewal. */
export declare class TokenErrorEvent extends Event {
  private constructor();
  readonly type: 'tokenerror';
  readonly error: Error;
}

export interface RuntimeEventMap {
  state: StateEvent;
  serveerror: ServeErrorEvent;
  tokenerror: TokenErrorEvent;
}

/** A pipe to wsprd. */
export declare class Runtime extends EventTarget {
  private constructor();
  /** The websocket URL. */
  readonly url: string;
  /** Resolves, with the reason, once the runtime has closed for good. Never rejects. */
  readonly closed: Promise<ConnectionError>;
  /** Whether it has closed for good (close(), or a lost pipe without reconnect). */
  readonly isClosed: boolean;
  /** 'open'; 'reconnecting' (waiting to try again) and 'connecting' (trying) while the pipe is lost; 'closed'. */
  readonly state: RuntimeState;
  /** The pipe's user, from its token; null without one. */
  readonly identity: TokenIdentity | null;
  /**
   * Renews the pipe's token (the same user) before it expires; the token
   * is kept for reconnects. Rejects with NoAccessError if refused (the
   * pipe keeps its token until it expires; then the daemon closes it).
   */
  refreshToken(token: string): Promise<TokenIdentity>;
  /** Closes the pipe for good: everything pending fails with ConnectionError. Idempotent. */
  close(): void;

  addEventListener<K extends keyof RuntimeEventMap>(
    type: K,
    listener: (this: Runtime, ev: RuntimeEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof RuntimeEventMap>(
    type: K,
    listener: (this: Runtime, ev: RuntimeEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;

  /** The signature of the object named `name`. */
  signature(name: string, options?: RequestOptions): Promise<Signature>;
  /** A stub for the object named `name`; give `T` to type its methods. */
  bindTo<T extends object = Stub>(name: string, options?: RequestOptions): Promise<T>;
  /** Calls a method by name; resolves with the Final array (every result). */
  call(name: string, method: string, args?: Json[], options?: RawCallOptions & { streaming?: false }): Promise<Json[]>;
  call(name: string, method: string, args: Json[], options: RawCallOptions & { streaming: true }): Call<Json[]>;

  /**
   * Serves a dispatcher, or an object as a leaf (suffix "" only, cacheable
   * lookups). An object with no methods publishes the name.
   */
  serve(name: string, target: Dispatcher | object, options?: ServeOptions): Promise<Server>;

  /** Names matching a pattern (`*` one element, `...` any depth). */
  glob(pattern: string, options?: RequestOptions): Promise<GlobEntry[]>;
  /** The rooted names a name resolves to. */
  resolve(name: string, options?: RequestOptions): Promise<string[]>;
  /** Mounts a server (rooted name or endpoint) under a name for `ttl` seconds (default 60). */
  mount(name: string, server: string, ttl?: number, options?: MountOptions): Promise<void>;
  /** Unmounts a server from a name; without a server, all of them. */
  unmount(name: string, server?: string): Promise<void>;
  /** Who may do what to a name (every tag, as in force there), and the version. */
  getPermissions(name: string, options?: RequestOptions): Promise<{ permissions: Permissions; version: string }>;
  /** Sets the permissions of a name (Admin there); tags left out are the parent's. */
  setPermissions(name: string, permissions: Permissions, options?: { version?: string }): Promise<void>;
  /** Deletes a name (Admin of it, and of every name below with `subtree`). */
  delete(name: string, options?: { subtree?: boolean }): Promise<void>;
}

/**
 * Opens a pipe to wsprd: `ws://host:port/ws` (an http URL of the daemon
 * works too; in a page the daemon serves, the URL may be left out, and
 * the runtime then reconnects by default).
 */
export declare function connect(url?: string, options?: ConnectOptions): Promise<Runtime>;
