"""Spark itself: the one place that builds the SparkSession, and a job's scratch space."""
