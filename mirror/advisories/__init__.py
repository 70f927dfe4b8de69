"""OSV advisories carried behind the air gap: the database in (advisories.sync), its
records (advisories.records) and which files of a closure they affect (advisories.matching)."""
