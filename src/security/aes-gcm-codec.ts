/**
 * A Temporal PayloadCodec that encrypts every payload with AES-256-GCM before it leaves the process,
 * so that workflow inputs, results, activity arguments, queries, updates and memos are ciphertext in
 * Temporal's database and in its UI (unless the UI asks the codec server to decode them).
 *
 * Encoded payload:  metadata { encoding: "binary/encrypted", encryption-key-id: <id> }
 *                   data     = IV (12 random bytes) ‖ AES-256-GCM ciphertext of the whole original
 *                              Payload protobuf (its metadata too) ‖ 16-byte tag
 * (the layout of Temporal's encryption samples, so their codec servers can read it with the same key).
 *
 * Rotation: several keys; the first encrypts, any known key id decrypts. Payloads that are not
 * `binary/encrypted` (written before the codec was turned on) pass through decode unchanged.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, ValueError, type Payload, type PayloadCodec } from '@temporalio/common';
// A CommonJS package whose named exports Node's ESM loader cannot see: take the namespace object.
import proto from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const { Payload: PayloadProto } = proto.temporal.api.common.v1;

export interface CodecKey {
  id: string;
  /** 32 bytes. */
  key: Uint8Array;
}

/** A payload the codec cannot decrypt: unknown key id, altered bytes, truncated data. */
export class PayloadDecryptionError extends ValueError {
  override readonly name = 'PayloadDecryptionError';
}

const text = (bytes: Uint8Array | null | undefined): string | undefined => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);

export class AesGcmCodec implements PayloadCodec {
  private readonly keys = new Map<string, Buffer>();
  readonly currentKeyId: string;

  constructor(keys: readonly CodecKey[]) {
    if (keys.length === 0) throw new Error('AesGcmCodec needs at least one key');
    for (const { id, key } of keys) {
      if (key.length !== 32) throw new Error(`AesGcmCodec: key "${id}" must be 32 bytes, got ${key.length}`);
      if (this.keys.has(id)) throw new Error(`AesGcmCodec: key id "${id}" appears twice`);
      this.keys.set(id, Buffer.from(key));
    }
    this.currentKeyId = keys[0]!.id;
  }

  /** The ids this codec can decrypt, the current one first. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.currentKeyId)!;
    return payloads.map((payload) => {
      const plain = PayloadProto.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: {
          [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
          [KEY_ID_METADATA]: Buffer.from(this.currentKeyId),
        },
        data,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (text(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
      const keyId = text(payload.metadata?.[KEY_ID_METADATA]);
      if (!keyId) throw new PayloadDecryptionError(`Encrypted payload has no ${KEY_ID_METADATA} metadata: cannot tell which key encrypted it`);
      const key = this.keys.get(keyId);
      if (!key) {
        throw new PayloadDecryptionError(
          `Payload was encrypted with key id "${keyId}", which is not among the configured keys (${this.keyIds.join(', ')}): ` +
            'add that key to TETHER_CODEC_KEYS (after the current one) to read it',
        );
      }
      const data = payload.data ?? new Uint8Array();
      if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError(`Encrypted payload (key id "${keyId}") is truncated: ${data.length} bytes`);
      const iv = data.subarray(0, IV_BYTES);
      const tag = data.subarray(data.length - TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAuthTag(tag);
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch (err) {
        throw new PayloadDecryptionError(
          `Encrypted payload (key id "${keyId}") failed authentication: it was altered, or key "${keyId}" is not the key that encrypted it`,
          err,
        );
      }
      const inner = PayloadProto.decode(plain);
      return { metadata: inner.metadata, data: inner.data };
    });
  }
}
