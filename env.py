"""The one place that says which connection, limits and (later) project, datasets and
schedule apply. DAG files and dag_utils read settings from here; nothing here does I/O
or reads Airflow Variables/Connections at import time.
"""

from __future__ import annotations

import os

from dag_utils.cdn_api import ClientSettings

# Airflow Connection holding the CDN API base URL (host) and token (password).
# In Composer it comes from Secret Manager; locally from AIRFLOW_CONN_CDN_API.
CDN_API_CONN_ID = "cdn_api"

# Requests in flight on the vendor's API from one task (the hard ceiling); the adaptive
# limit below it finds what the API can take.
CDN_CLIENT = ClientSettings(
    max_concurrency=int(os.environ.get("CDN_MAX_CONCURRENCY", "64")),
    window_deadline_s=float(os.environ.get("CDN_WINDOW_DEADLINE_S", "240")),
)
