"""Models on the Hugging Face Hub: a checkpoint written as a Hub folder (`python -m bench.export CK --hf DIR`),
and a Hub folder read back as a model (`--models hf-hub:ORG/NAME[@REV]`, bench.eval.loading).

  folder.py   the folder: model.safetensors, timm's config.json, the model card, sharpbench.json; its refusals;
              the upload
  card.py     the model card: YAML front matter whose `model-index` is built from the rows only, and its body
"""
