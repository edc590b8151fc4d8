"""The runtime benchmark's cases: public training scripts run unchanged on CPU with tiny arguments.

Each case names a fetched repository (``/work/.mirror/<owner>+<name>/repo``, brought by the search tool's
``fetch``), the commit it was measured at, the repository paths ``setup.py`` copies into the case's scratch
folder (none of their code is committed here), the folder the script runs in, its exact arguments and the data
``setup.py`` synthesises in place of what the script would download.

data kinds (paths relative to the case's working folder):
  mnist:ROOT          torchvision MNIST raw idx files under ROOT/MNIST/raw (``download=True`` finds them)
  cifar10:ROOT        CIFAR-10 python pickles under ROOT/cifar-10-batches-py
  text:PATH           a text file of made-up sentences
  names:PATH          one made-up name a line (makemore)
  wikitext:DIR        DIR/train.txt, valid.txt, test.txt
  shakespeare_char:DIR  nanoGPT's prepare.py format: train.bin, val.bin (uint16 ids), meta.pkl
  bsds300:DIR         DIR/BSDS300/images/{train,test}/*.jpg (super_resolution's download folder)
  sine:PATH           time_sequence_prediction's traindata.pt (a float64 array of sine waves)
"""

EXAMPLES = ("pytorch/examples", "77f55b9")
NANOGPT = ("karpathy/nanoGPT", "3adf61e1")
MINGPT = ("karpathy/minGPT", "37baab7")
MAKEMORE = ("karpathy/makemore", "988aa59")
CIFAR = ("kuangliu/pytorch-cifar", "49b7aa9")
#: Left out of CASES: kuangliu/pytorch-cifar's main.py (SimpleDLA, batch 128 hard-coded) takes ~50 s a step on
#: 2 busy cores, so its 3 watched steps and probes cost minutes. It runs with this entry (and compat/bin's stty,
#: as its utils.py asks the terminal's size):
HEAVY = [
    {"id": "pytorch-cifar", "repo": CIFAR, "paths": ["main.py", "utils.py", "models/"], "cwd": ".",
     "argv": ["main.py", "--lr", "0.1"], "data": ["cifar10:./data"], "plain_timeout": 300, "path": ["compat/bin"]},
]
TUTORIAL = ("yunjey/pytorch-tutorial", "0500d3d")

CASES = [
    {"id": "examples-mnist", "repo": EXAMPLES, "paths": ["mnist/main.py"], "cwd": "mnist",
     "argv": ["main.py", "--epochs", "1", "--no-accel", "--batch-size", "32", "--test-batch-size", "100"],
     "data": ["mnist:../data"]},
    {"id": "examples-mnist_hogwild", "repo": EXAMPLES, "paths": ["mnist_hogwild/main.py", "mnist_hogwild/train.py"],
     "cwd": "mnist_hogwild", "argv": ["main.py", "--epochs", "1", "--num-processes", "2", "--batch-size", "32",
                                      "--test-batch-size", "100"],
     "data": ["mnist:../data"]},
    {"id": "examples-word_language_model", "repo": EXAMPLES,
     "paths": ["word_language_model/main.py", "word_language_model/model.py", "word_language_model/data.py"],
     "cwd": "word_language_model",
     "argv": ["main.py", "--epochs", "1", "--emsize", "32", "--nhid", "32", "--nlayers", "1", "--bptt", "16",
              "--batch_size", "8", "--data", "./data/wikitext-2", "--log-interval", "20"],
     "data": ["wikitext:data/wikitext-2"]},
    {"id": "examples-word_language_model-transformer", "repo": EXAMPLES,
     "paths": ["word_language_model/main.py", "word_language_model/model.py", "word_language_model/data.py"],
     "cwd": "word_language_model",
     "argv": ["main.py", "--model", "Transformer", "--epochs", "1", "--emsize", "32", "--nhid", "32", "--nlayers",
              "1", "--nhead", "2", "--bptt", "16", "--batch_size", "8", "--lr", "5", "--data", "./data/wikitext-2",
              "--log-interval", "20"],
     "data": ["wikitext:data/wikitext-2"]},
    {"id": "examples-dcgan", "repo": EXAMPLES, "paths": ["dcgan/main.py"], "cwd": "dcgan",
     "argv": ["main.py", "--dataset", "fake", "--niter", "1", "--batchSize", "16", "--imageSize", "64", "--ngf", "8",
              "--ndf", "8", "--nz", "16", "--workers", "2", "--outf", "out", "--manualSeed", "1"],
     "data": []},
    {"id": "examples-vae", "repo": EXAMPLES, "paths": ["vae/main.py"], "cwd": "vae", "mkdirs": ["results"],
     "argv": ["main.py", "--epochs", "1", "--no-accel", "--batch-size", "32"], "data": ["mnist:../data"]},
    {"id": "examples-super_resolution", "repo": EXAMPLES,
     "paths": ["super_resolution/main.py", "super_resolution/data.py", "super_resolution/dataset.py",
               "super_resolution/model.py"], "cwd": "super_resolution",
     "argv": ["main.py", "--upscale_factor", "3", "--batchSize", "4", "--testBatchSize", "4", "--nEpochs", "1",
              "--lr", "0.001", "--threads", "2"],
     "data": ["bsds300:dataset"]},
    {"id": "examples-time_sequence_prediction", "repo": EXAMPLES, "paths": ["time_sequence_prediction/train.py"],
     "cwd": "time_sequence_prediction", "argv": ["train.py", "--steps", "3"], "data": ["sine:traindata.pt"],
     # the example torch.load()s a numpy array, refused by torch >= 2.6's weights_only default (upstream bug)
     "env": {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}},
    {"id": "examples-regression", "repo": EXAMPLES, "paths": ["regression/main.py"], "cwd": "regression",
     "argv": ["main.py"], "data": []},
    {"id": "examples-siamese_network", "repo": EXAMPLES, "paths": ["siamese_network/main.py"],
     "cwd": "siamese_network",
     "argv": ["main.py", "--epochs", "1", "--no-accel", "--batch-size", "32", "--test-batch-size", "100"],
     "data": ["mnist:../data"]},
    {"id": "nanoGPT-shakespeare_char", "repo": NANOGPT,
     "paths": ["train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py"], "cwd": ".",
     "argv": ["train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=2",
              "--eval_interval=10", "--log_interval=5", "--block_size=64", "--batch_size=8", "--n_layer=2",
              "--n_head=2", "--n_embd=64", "--max_iters=20", "--lr_decay_iters=20", "--warmup_iters=5",
              "--dropout=0.0"],
     "data": ["shakespeare_char:data/shakespeare_char"]},
    {"id": "minGPT-chargpt", "repo": MINGPT,
     "paths": ["projects/chargpt/chargpt.py", "mingpt/__init__.py", "mingpt/model.py", "mingpt/trainer.py",
               "mingpt/utils.py", "mingpt/bpe.py"], "cwd": "projects/chargpt", "pythonpath": ["."],
     "argv": ["chargpt.py", "--model.model_type=gpt-nano", "--trainer.max_iters=30", "--trainer.batch_size=8",
              "--trainer.num_workers=2", "--data.block_size=32"],
     "data": ["text:input.txt"]},
    {"id": "makemore-transformer", "repo": MAKEMORE, "paths": ["makemore.py"], "cwd": ".",
     "argv": ["makemore.py", "-i", "names.txt", "-o", "out", "--max-steps", "30", "--num-workers", "2",
              "--type", "transformer", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--batch-size", "16"],
     "data": ["names:names.txt"]},
    {"id": "makemore-rnn", "repo": MAKEMORE, "paths": ["makemore.py"], "cwd": ".",
     "argv": ["makemore.py", "-i", "names.txt", "-o", "out", "--max-steps", "30", "--num-workers", "0",
              "--type", "rnn", "--n-embd", "32", "--n-embd2", "32", "--batch-size", "16"],
     "data": ["names:names.txt"]},
    {"id": "tutorial-feedforward", "repo": TUTORIAL,
     "paths": ["tutorials/01-basics/feedforward_neural_network/main.py"],
     "cwd": "tutorials/01-basics/feedforward_neural_network", "argv": ["main.py"], "data": ["mnist:../../data"]},
    {"id": "tutorial-language_model", "repo": TUTORIAL,
     "paths": ["tutorials/02-intermediate/language_model/main.py",
               "tutorials/02-intermediate/language_model/data_utils.py"],
     "cwd": "tutorials/02-intermediate/language_model", "argv": ["main.py"], "data": ["text:data/train.txt"],
     "plain_timeout": 90},
]

#: Steps trainlint watches (its default) and the plain-N run stops after.
STEPS = 3
DEFAULT_PLAIN_TIMEOUT = 120
