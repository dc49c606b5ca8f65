// The failure converter of every tether client and worker when the payload codec is on
// (src/security/codec-config.ts): failure messages and stack traces are moved out of the
// plain-text fields of history into an encoded payload, which the codec then encrypts.
// CommonJS on purpose: Temporal loads it with require() (clients, activity workers) and bundles it
// into the workflow sandbox, both by path (`failureConverterPath`).
'use strict';
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
