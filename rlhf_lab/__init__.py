"""RLHF Lab's helper package: one module per idea, each taught by a notebook.

The learner's index, chapter by chapter (a notebook shows the source of what it teaches):

    00 setup              config (modes, seeds, device, paths, Settings), checks, stages (the
                          table of stages), artifacts (what one chapter saves and the next loads)
    01 pretraining        world (facts and questions), scripted (answers of every quality),
                          webdump, corpus (the data generator), cleaning, tokenizer, model,
                          training (the language-model loop), generation, gold (the rubric),
                          pretraining (the stage)
    02 SFT                sft, evaluation (the one evaluation every chapter shares),
                          answer_cache (answers already sampled are read back)
    03 human feedback     comparisons (two answers to rate), feedback (ratings on disk),
                          widget, raters (simulated raters and classes), agreement
    04 reward model       preferences (ratings as training data), reward_model
    05 KL divergence      kl
    06 PPO                ppo (the algorithm), ppo_stage (its loop and stage), plots
    07 reward hacking     best_of_n
    08 DPO                dpo
    09 the loop           iterate, workers (independent seeds side by side, one process
                          each), class_ratings (a class's ratings merged and measured),
                          class_app (the class's pairs and names), class_server (the
                          class server: rating and chat for a lecture hall)
    10 beyond PPO         critic_free (REINFORCE, RLOO, GRPO), critic_free_stage (their loop,
                          the verifiable reward and the stages)
    11 exploration        exploration (the probability of what a policy never writes,
                          temperature, off-policy answers, pairs with admissions)
    12 thumbs             kto (KTO and the thumbs reward loss), thumbs (thumbs as data, a
                          reward model from thumbs, what a click is worth), chat (ask the
                          models your own question, thumbs under each answer)
    13 feedback limits    ai_feedback (a reward model as judge), phrasing (one fact, every
                          phrasing)
    command line          cli (`python -m rlhf_lab <stage>`), causal_lm (any causal LM),
                          distributed (several devices)

Layers, lowest first; a module imports only from its own layer or below, and nothing imports in
a cycle (`.importlinter`, checked by `make test`): world and rubric -> language model ->
feedback -> RLHF algorithms -> stages -> command line and apps.
"""
