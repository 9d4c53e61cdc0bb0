"""What every part of the product stands on: settings, the database, logs, languages, phone numbers, keys."""
