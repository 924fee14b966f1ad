"""Test and benchmark data: the model flags of the paper's two headline runs (not used by the runs themselves,
which read them from config/*.yaml)."""

# The model-, loss- and post-processing-shaping flags of the two headline commands (SPEC §1; README of the
# original). Everything else is at its default.
HEADLINE_MODEL_FLAGS = {
    "thumos14": dict(num_queries=40, enc_layers=2, dec_layers=5, actionness_loss_coef=3.0, norm_embed=True,
                     exp_logit_scale=True, proposals_weight_type="after_softmax", enable_classAgnostic=True,
                     enable_refine=True, refine_drop_saResidual=True, salient_loss=True,
                     salient_loss_coef=3.0,
                     postprocess_type="class_agnostic", postprocess_topk=100),
    "anet": dict(num_queries=30, enc_layers=2, dec_layers=2, enable_backbone=True, actionness_loss_coef=3.0,
                 norm_embed=True, exp_logit_scale=True, proposals_weight_type="after_softmax",
                 enable_classAgnostic=True, enable_refine=True, refine_drop_saResidual=True,
                 salient_loss=True,
                 postprocess_type="class_agnostic", postprocess_topk=100),
}
