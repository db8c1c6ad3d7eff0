"""Shared library of the CDN statistics DAGs: plain, tested functions the DAG files wire up."""
