// What a TypeScript program sees of the client: checked by `tsc` (test/types.test.js), never
// run. Each `@ts-expect-error` fails the check if that misuse stops being an error.
import {
  Client,
  ClientError,
  ConnectionLost,
  connect,
  type ConnectOptions,
  type Message,
  type Role,
  type Subscription,
} from '../src/jackrabbit.js';

export async function produceAndConsume(url: string, ca: string): Promise<number[]> {
  const options: ConnectOptions = {
    queue: 'orders',
    ca,
    token: 'secret',
    reconnect: true,
    onRole: (role: Role, epoch: number | null) => console.log(role, epoch),
  };
  const client: Client = await connect(url, options);
  const seqs: number[] = await Promise.all([
    client.add('text'),
    client.add(new Uint8Array([1]), { key: 'k' }),
  ]);
  const messages: Subscription = await client.take({ prefetch: 100 });
  for await (const message of messages) {
    const seq: number = message.seq;
    const data: Uint8Array = message.data;
    const when: number = message.createdAt;
    const again: boolean = message.redelivered;
    console.log(seq, data, when, again, message.id, message.text());
    message.ack();
    break;
  }
  const epoch: number = await client.handover();
  const role: Role | null = client.role;
  console.log(epoch, role, client.epoch, client.closeCode, client.closeReason);
  await client.close();
  return seqs;
}

export function handle(error: unknown): string | undefined {
  if (error instanceof ConnectionLost) return `lost: ${error.code}`;
  if (error instanceof ClientError) return `${error.code}: ${error.message}`;
  return undefined;
}

export async function misuse(client: Client, message: Message): Promise<void> {
  // @ts-expect-error: data is bytes or a string
  await client.add(42);
  // @ts-expect-error: the key is a string
  await client.add('x', { key: 7 });
  // @ts-expect-error: prefetch is a number
  await client.take({ prefetch: '10' });
  // @ts-expect-error: there is no read() yet (protocol §5 is not on the server)
  await client.read();
  // @ts-expect-error: a role is active or standby
  const role: Role = 'leader';
  // @ts-expect-error: seq is a number
  const seq: string = message.seq;
  // @ts-expect-error: the queue option is a string
  await connect('wss://127.0.0.1:8443', { queue: 1 });
  console.log(role, seq);
}
