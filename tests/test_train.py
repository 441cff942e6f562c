import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.core.cache import Checkpointer
from helpers.methods.train import accuracy, train_classifier


def toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def test_training_learns_a_separable_problem():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    loader = toy_data()
    history = train_classifier(model, loader, torch.optim.Adam(model.parameters(), lr=0.1), epochs=5, val_loader=loader)
    assert history.epochs == 5 and history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.9 and all(s > 0 for s in history.samples_per_s)


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    loader = toy_data()
    torch.manual_seed(0)
    straight = nn.Linear(4, 2)
    train_classifier(straight, loader, torch.optim.SGD(straight.parameters(), lr=0.1), epochs=4)

    torch.manual_seed(0)
    resumed = nn.Linear(4, 2)
    ckpt = Checkpointer(tmp_path / "ckpt.pt")
    train_classifier(resumed, loader, torch.optim.SGD(resumed.parameters(), lr=0.1), epochs=2, checkpoint=ckpt)
    fresh = nn.Linear(4, 2)  # a new process: new model and optimizer, same checkpoint
    history = train_classifier(fresh, loader, torch.optim.SGD(fresh.parameters(), lr=0.1), epochs=4, checkpoint=ckpt)
    assert (history.epochs, history.resumed_epochs) == (4, 2)
    for a, b in zip(straight.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)


def test_accuracy_of_a_fixed_model():
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0, 0, 0], [1.0, 0, 0, 0]]))
        model.bias.zero_()
    assert accuracy(model, toy_data()) == 1.0


def spy_on_resume(monkeypatch, modules, events):
    """Record when each module moves to its device and when an Adam optimizer loads its state."""
    for name, module in modules.items():
        move = module.to

        def to(*args, _move=move, _name=name, **kwargs):
            events.append(f"{_name}.to")
            return _move(*args, **kwargs)

        monkeypatch.setattr(module, "to", to)
    load = torch.optim.Adam.load_state_dict

    def load_state_dict(self, state):
        events.append("optimizer.load")
        return load(self, state)

    monkeypatch.setattr(torch.optim.Adam, "load_state_dict", load_state_dict)


def assert_state_beside_parameters(optimizer):
    """Device-agnostic: every moment tensor lives on its parameter's device (CUDA fails otherwise)."""
    for param, state in optimizer.state.items():
        for value in state.values():
            if torch.is_tensor(value) and value.dim() > 0:
                assert value.device == param.device


def test_resume_moves_the_model_before_loading_the_optimizer_state(tmp_path, monkeypatch):
    """Optimizer.load_state_dict casts to the parameters' device at load time: move first."""
    loader = toy_data()
    ckpt = Checkpointer(tmp_path / "ckpt.pt")
    first = nn.Linear(4, 2)
    train_classifier(first, loader, torch.optim.Adam(first.parameters()), epochs=1, checkpoint=ckpt)
    model, events = nn.Linear(4, 2), []
    spy_on_resume(monkeypatch, {"model": model}, events)
    optimizer = torch.optim.Adam(model.parameters())
    train_classifier(model, loader, optimizer, epochs=2, checkpoint=ckpt)
    assert "optimizer.load" in events and events.index("model.to") < events.index("optimizer.load")
    assert_state_beside_parameters(optimizer)
