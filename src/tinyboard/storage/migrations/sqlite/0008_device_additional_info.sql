-- ThingsBoard's `additionalInfo` of a device: a JSON object as a client saved it, NULL for
-- a device that never had one (ThingsBoard answers null for those too).
ALTER TABLE device ADD COLUMN additional_info TEXT;
