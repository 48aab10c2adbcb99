"""The lab around the modules: ``explain`` (what a layer computes, checked on the numbers),
``conformance`` (``verify``: every number against the installed torch), ``gradcheck``
(central differences, no torch), ``bench`` (speed against torch) and ``cli`` (the rnnlab
command). ``cases`` holds the one test-case specification and tolerance table they share.
Top of the import graph: nothing in rnnlab imports from here."""
