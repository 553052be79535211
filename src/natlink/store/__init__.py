"""Tables: Delta I/O (the only module that reads or writes tables) and the quarantine table."""
