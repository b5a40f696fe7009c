"""Ab initio reconstruction: training interleaved with pose search, and the model reset (cryoDRGN2 "+r").

The schedule, in three stages (the seed's section 5.3.3):

1. ``epochs_search`` epochs: the first on random poses, then a pose search in every
   ``search_every``-th epoch (epochs 1, 1 + every, ...), the epochs between reusing the
   last poses. The search is online: ``search_chunk`` particles at a time are searched
   with the current model and trained on at once, so the model improves during the
   epoch, as with cryoDRGN's search per batch. Searching all particles against one model
   (``search_chunk = 0``) got stuck at wrong, self-consistent poses in our tests, even at
   SNR 10: every image is placed against the same featureless first model. The search's
   band limit grows from ``kmin`` to ``kmax`` over ``kmax_ramp_epochs`` epochs, as the
   model resolves finer detail.
2. ``epochs_fixed`` epochs (0 to skip the reset): the networks and the optimiser start
   afresh and train on the last poses. A decoder trained while the poses were poor
   predicts a constant at high frequency and its gradients there vanish; the reset cures
   it (logged as ``grad_high``, the gradient norm of the decoder's last layer for the
   high-frequency half of the loss).
3. ``epochs_refine`` epochs with a pose search at the first and every ``search_every``-th.

Heterogeneous runs (``zdim > 0``) train an image encoder with the decoder, as ``train-vae``
does. Rendering the model at every image's own latent would cost a lattice per image;
instead each searched chunk is searched against the model at the mean of its posterior
means (``search_groups = 1``, the default), or its images are grouped by k-means on their
latents and each group searched against the model at its centre. Training then uses each
image's own latent. On a 1-D motion of adenylate kinase, one group converged (median
rotation error 0.015 after the second search) where four groups did not (1.27, and 0.149
after the fourth): early in training the groups' models disagree with each other, and
poses found against different models do not share one frame.

Tilt pairs (``data.tilted``, the stage tilt ``tilt_deg`` about x) are searched together:
every rotation ``R`` is scored on the untilted image at ``R`` plus the tilted one at
``Rx(tilt) R``, each image with its own best shift.

Two baselines of the seed's chapter 5 learn the poses instead of searching them, in one
stage: ``method = "gd"`` starts every particle at a random rotation and zero shift and
descends the image loss on per-particle corrections (the volume trained jointly), and
``method = "pose-vae"`` trains an encoder that predicts each image's rotation (S2 x S2
mean, a tangent-space Gaussian around it) with the decoder. Both are expected to fail from
random starts (the seed's table 5.2).

Images are prepared once, uncentred; after each search they are centred by the found
shifts. :class:`Abinit` is a method on the run engine (:class:`cryofield.train.Trainer`):
the engine's checkpoints (models, optimiser, epoch and RNG state) carry the poses too, so
``resume`` continues exactly.
"""

from cryofield._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "AbinitConfig": ".config", "Abinit": ".method", "Poses": ".poses", "centred": ".poses",
    "high_frequency_gradient": ".poses", "learned_poses": ".poses",
})
