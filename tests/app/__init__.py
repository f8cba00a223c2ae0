"""Tests of the application: DeepPose (deeppose/, models/, data/K2HPD, tools/)."""
