"""The paper-reproduction kit: what the benchmarks and notebooks need beyond the library core.

Kept apart from the core (``special``, ``distributions``, ``nn``, ``models``, ``vae``, ``m1m2``,
``sampling``, ``minibatch``), which imports no plotting library, downloads nothing and prints
nothing. Importing this package imports none of its modules; import them by name:

==========  ======================================================================================
datasets    MNIST IDX loader (checksums, dynamic binarisation, 50k/10k split); Planetoid loader
            (packaged Cora and CiteSeer, a data root, or PyG's download) and the 85/5/10 link split
training    a small training loop: KL warm-up, early stopping, resumable checkpoints; the
            per-epoch seeded loaders (the M1+M2 semi-supervised batches)
evaluation  k-NN classification of latent codes (geodesic on the sphere), label draws,
            summaries of trained posteriors
linkpred    the full-batch link-prediction protocol of section 5.4 (split, runs, best-val test)
synthetic   the circle-recovery experiment of section 5.1 (data, models, metrics)
graphs      a degree-corrected stochastic block model for large-graph runs
host_syncs  a counter of host-device synchronisations (CUDA, or a proxy on the CPU)
provenance  what produced a result: command, commit, hardware (CPU, GPU), versions
plotting    Hammer projection, latent scatter plots, image grids, surface area (Figure 6)
==========  ======================================================================================
"""
