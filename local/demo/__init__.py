"""`make demo` (`python -m local.demo`): the offline stack on the demo scenario, and a story told
against it through the product's HTTP API, its notifications queue and the simulator's admin API.

`running` starts and stops the stack, `clients` talks to it, `story` holds the steps, `report`
prints progress and the summary; `__main__` ties them together.
"""
