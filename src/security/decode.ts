/**
 * Decoding payloads read straight from history (e.g. a run's input from `fetchHistory()`), through the
 * same codecs the client uses: with TETHER_CODEC_KEYS set they are ciphertext, and
 * `defaultPayloadConverter.fromPayload` alone cannot read them.
 */
import { defaultPayloadConverter, type LoadedDataConverter, type Payload } from '@temporalio/common';

/** Anything that carries a client's loaded data converter: `client.workflow`, `handle.client`. */
export interface HasDataConverter {
  options: { loadedDataConverter: LoadedDataConverter };
}

/** Runs the client's codecs over raw payloads, last codec first (the reverse of encoding). */
export async function decodeRawPayloads(client: HasDataConverter, payloads: Payload[]): Promise<Payload[]> {
  let out = payloads;
  for (const codec of [...client.options.loadedDataConverter.payloadCodecs].reverse()) out = await codec.decode(out);
  return out;
}

/** The value of one raw payload, decoded then converted the way the client would. */
export async function valueFromRawPayload<T>(client: HasDataConverter, payload: Payload): Promise<T> {
  const [decoded] = await decodeRawPayloads(client, [payload]);
  return (client.options.loadedDataConverter.payloadConverter ?? defaultPayloadConverter).fromPayload<T>(decoded!);
}
