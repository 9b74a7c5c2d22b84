"""The scene and referent schema the simulator and the clarifier share, with no simulator in it: objects and their
size tables (`objects`), the attribute vocabulary and its surface forms (`vocab`), and referring expressions:
which objects a description fits and how to phrase one (`language`).

`clearvla.sim` builds and runs workcells from these; `clearvla.clarify` grounds instructions in them, on a robot as
in the simulator.
"""
