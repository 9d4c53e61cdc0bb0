"""Hospital staff and the ward's own page: accounts, the ward list, reports. No web framework here."""
