"""The dev stack (``raas stack``): the whole platform on one machine (demos, tests, development).

:mod:`~devstack.processes` starts, watches and stops the services,
:mod:`~devstack.demo` runs the example jobs through the REST API, and
:mod:`~devstack.cli` is the command.
"""
