"""Workloads, fault schedules and histories shared by `simulate` and the experiment runner."""
