"""The sinks the spool feeds, and the one contract they share (:mod:`.base`)."""
