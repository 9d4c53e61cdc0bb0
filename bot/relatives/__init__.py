"""The relative's side: the dialogue, one-time codes, who may read which admission, the status card."""
