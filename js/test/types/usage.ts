// Compiled (not run) by types.test.js: the declarations must accept the
// library's documented uses and refuse wrong ones.
import {
  connect,
  errorIds,
  signatureOf,
  AbortedError,
  BadArgError,
  ConnectionError,
  WsprError,
  type Call,
  type Dispatcher,
  type Runtime,
  type Permissions,
  type RuntimeState,
  type Server,
  type ServerContext,
  StateEvent,
} from '../../wspr.js';

interface Adder {
  add(a: number, b: number, options?: { timeout?: number; signal?: AbortSignal }): Promise<number>;
  streamingAdd(options?: { signal?: AbortSignal }): Call<number>;
}

export async function use(): Promise<void> {
  const rt: Runtime = await connect('ws://127.0.0.1:8124/ws', { timeout: 1000, trace: (dir, m) => void [dir, m.id] });
  const adder = await rt.bindTo<Adder>('demo/adder');
  const five: number = await adder.add(2, 3, { timeout: 500, signal: AbortSignal.timeout(100) });
  const call = adder.streamingAdd();
  call.stream.write(five);
  call.stream.end();
  for await (const total of call.stream) void total;
  const total: number = await call;
  void total;

  const loose = await rt.bindTo('demo/adder');
  await loose.add(1, 2);

  const raw: unknown[] = await rt.call('demo/adder', 'add', [1, 2], { timeout: 10 });
  const streaming = rt.call('demo/adder', 'streamingAdd', [], { streaming: true });
  streaming.stream.write(1);
  void raw;

  const dispatcher: Dispatcher = async (suffix, method) =>
    suffix === '' ? { service: { hello: (ctx: ServerContext, who: string) => `${method} ${who}` }, cacheable: true } : null;
  const server: Server = await rt.serve('a', dispatcher);
  await server.addName('b');
  await server.removeName('a');
  const served: string[] = server.names;
  void served;
  await rt.serve('published', {});
  await rt.serve('c', { sum: async (ctx: ServerContext) => ctx.stream?.write(1) }, { signature: { sum: { isStreaming: true } } });
  await server.stop();
  const entries = await rt.glob('...');
  const name: string = entries[0].name;
  void name;
  await rt.mount('x', '/@w1@127.0.0.1:1@0@s@@', 30);
  await rt.unmount('x');
  const names: string[] = await rt.resolve('x');
  void names;
  void signatureOf({ f(ctx: unknown, a: number) { return a; } });

  try {
    await adder.add(1, 2);
  } catch (e) {
    if (e instanceof WsprError) {
      const id: string = e.id;
      void id;
    }
    if (e instanceof ConnectionError) {
      const aborted: AbortedError = e;
      void aborted;
    }
  }
  const err = new BadArgError('no');
  const wire: { id: string; msg: string } = err.toJSON();
  void wire;
  void errorIds.timeout;
  const reason: ConnectionError = await rt.closed;
  void reason;
  rt.close();

  const page = await connect(undefined, { reconnect: { initialDelay: 100, maxDelay: 5000 } });
  const now: RuntimeState = page.state;
  void now;
  page.addEventListener('state', (ev) => {
    const s: RuntimeState = ev.state;
    const why: Error | null = ev.error;
    void [s, why, ev instanceof StateEvent];
  });
  page.addEventListener('serveerror', (ev) => void [ev.server.serverId, ev.name, ev.error.message]);
  await connect('ws://127.0.0.1:8124/ws', { reconnect: true });

  // Names and who may take them.
  await rt.call('demo/adder', 'add', [1, 2], { serverBlessings: ['alice/...'] });
  await rt.mount('mine/x', '/@w1@h:1@1@s@@', 60, { serverBlessings: ['alice'] });
  const { permissions, version }: { permissions: Permissions; version: string } = await rt.getPermissions('mine/x');
  const mounters: string[] | undefined = permissions.Mount;
  void mounters;
  await rt.setPermissions('mine/x', { Mount: ['alice', 'bob'] }, { version });
  await rt.delete('mine', { subtree: true });
  // @ts-expect-error not a tag
  await rt.setPermissions('mine/x', { Write: ['alice'] });

  // @ts-expect-error an unknown connect option
  await connect('ws://x/ws', { retries: 1 });
  // @ts-expect-error an unknown reconnect option
  await connect('ws://x/ws', { reconnect: { retries: 1 } });
  // @ts-expect-error a state is one of four
  const bad: RuntimeState = 'gone';
  void bad;
  // @ts-expect-error a serve option that does not exist
  await rt.serve('d', {}, { cache: true });
  // @ts-expect-error a stream is not a string
  const s: string = call.stream;
  void s;
}
