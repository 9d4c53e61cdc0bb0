"""How hospitals' data enters: the intake rules shared by the API, the CSV import and the demo; hospitals and their keys."""
