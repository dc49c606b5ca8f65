/** libvirt errors as Temporal failures: a request libvirt calls wrong is final, anything else is retried. */
import { ApplicationFailure } from '@temporalio/activity';
import { LibvirtError } from '../../src/libvirt/binding.ts';

/** libvirt errors that say the request itself is wrong: retrying cannot help. */
const FINAL_LIBVIRT_ERRORS = new Set([
  3, // VIR_ERR_NO_SUPPORT
  8, // VIR_ERR_INVALID_ARG
  27, // VIR_ERR_XML_ERROR
  55, // VIR_ERR_OPERATION_INVALID (e.g. target already exists)
  67, // VIR_ERR_CONFIG_UNSUPPORTED
]);

export function libvirtFailure(err: unknown, type: 'DiskAttachFailed' | 'DiskDetachFailed' | 'SpawnFailed' | 'ExtendFailed' | 'PowerFailed' | 'RepairFailed' | 'SwapFailed'): unknown {
  if (err instanceof LibvirtError) {
    const message = `libvirt: ${err.message} (code ${err.code})`;
    return FINAL_LIBVIRT_ERRORS.has(err.code) || /Permission denied/.test(err.message)
      ? ApplicationFailure.nonRetryable(message, type)
      : ApplicationFailure.retryable(message, 'LibvirtUnavailable');
  }
  return err;
}
