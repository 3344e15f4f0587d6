-- A device's `additionalInfo`, as migrations/sqlite/0008: JSON text, NULL if it never had one.
ALTER TABLE device ADD COLUMN additional_info TEXT;
