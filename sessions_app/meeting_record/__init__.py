"""The meeting record: versions of the transcript (live, refined, archive), turns, the post-session pass."""
