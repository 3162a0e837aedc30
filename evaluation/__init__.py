"""Objective evaluation of audio codecs: the paper's metrics (`metrics`) and the Opus / MP3 baselines (`baselines`)."""
