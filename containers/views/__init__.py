"""The dashboard's pages, one module per domain; `containers/urls.py` routes to them.

Pages read through the `usecases.*_for(principal)` helpers and change state only through the use
cases, so that every page shows only what its user may see and every change is checked and audited.
"""
