"""A round as named stages, each a function over database ids that opens its own transactions:

    train.train_round(ctx, job)              train the model on the round's training set
    score.score_shard(ctx, job, i, total)    predict or re-score one shard of the pool, stage scores
    rank.rank_round(ctx, job)                make the staged scores the served ranking
    evaluate.evaluate_round(ctx, job)        mAP on the test split

route.route(ctx, job) says which stage comes next from wherever the round stands; worker/tasks.py
wires each stage to a Celery task.
"""
