"""The memory budget of one host: its validated inputs (``inputs``), the plan derived from it
(``plan``), PGTune's formulas (``pgtune``), the containers' PIDs limits and CPU shares
(``limits``), PostgreSQL's memory units (``guc_units``) and the capacity table (``table``). The
Ansible filter ``memory_plan`` (filter_plugins/memory_budget.py) calls ``plan.make_plan``.

This package is not in filter_plugins/ because Ansible's filter loader scans that directory two levels
deep and takes every ``*.py`` there for a filter plugin (warning about each one that is not).
``plugin_utils/`` is where a collection keeps controller-side code its plugins share.
"""
