/** tether's search attributes (registered on the server at start). Safe to import from workflows. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const InstanceUuid = defineSearchAttributeKey('InstanceUuid', SearchAttributeType.KEYWORD);
export const VolumeId = defineSearchAttributeKey('VolumeId', SearchAttributeType.KEYWORD);
export const ComputeHost = defineSearchAttributeKey('ComputeHost', SearchAttributeType.KEYWORD);
export const TetherState = defineSearchAttributeKey('TetherState', SearchAttributeType.KEYWORD);
