"""The journal: the only code that speaks SQL; typed frozen records and snapshots for every reader."""
