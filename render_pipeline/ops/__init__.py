"""Thin Dagster ops around the imaging engine and the maintenance queries."""
