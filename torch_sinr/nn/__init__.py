"""What touches modules: the coded layer and the walk that swaps it in.

- ``layer``: ``SINRLinear``, the drop-in ``nn.Linear``;
- ``handlers``: which module types can be coded, and how (a registry);
- ``matching`` and ``config``: ``SINRConfig`` and how it names modules;
- ``storage``: how a dense tensor the file keeps is stored (float dtype, uniform grid, steps);
- ``transform``: coding a whole model in place, and undoing it;
- ``report``: what coding did, per layer and in total.
"""
