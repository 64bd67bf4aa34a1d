"""Training of the embedded demo checkpoints (``models/embedded/{captioner,itm,clip}``) from scratch on the demo world.

    python -m capfilt.demo.training --output models/embedded

The two models are trained separately (BLIP Table 4: a filter sharing the captioner's weights waves its
mistakes through); as in BLIP, where both start from one pre-trained model, the filter's vision tower and text
encoder start from the trained captioner's and are then trained on their own. Training data is drawn fresh every
step through the same path as demo shards (render, JPEG/PNG bytes, the pipeline's decoder, ``BlipProcessor``),
so the models see exactly what the pipeline will feed them; the captioner's mistakes the filter learns from are
sampled by the pipeline's ``Captioner``, and the filter's training forward is ``models.itm``'s, the one
``ItmScorer`` scores with. CPU only, seeded.

The files: ``data`` (what each step trains on), ``build`` (the models before training, and saving them),
``loops`` (the two training loops), ``itc`` (the filter's ITC projections, on its frozen towers), ``clip`` (the
tiny CLIP), ``card`` (the model card), ``record`` (each model's ``training.json``), ``__main__`` (the command).
The second pair (``models/embedded/{vlm-captioner,siglip}``, ``python -m capfilt.demo.training.vlm_pair``):
``vlm`` (the LLaVA-shaped captioner), ``siglip`` (its SigLIP filter), ``vlm_pair`` (their command and card). ``itc`` and ``clip`` train with CLIP's InfoNCE
through ``demo.contrastive.fit``, the loop the retrieval evaluation trains with. Measuring the models
is not training and lives in ``capfilt.demo.measure``, which ships; this subpackage does not (setup.py leaves it
out of the wheel): workers never train, and it reproduces package data from a source checkout.
"""
