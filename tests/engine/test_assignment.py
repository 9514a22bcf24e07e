import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from orchestrator import models, schema
from orchestrator.db import make_engine
from orchestrator.playbook.model import Assignment
from orchestrator.work.assignment import UnknownReference, resolve_assignee
from tests.factories import AccountFactory, DealFactory, OwnerFactory

_roles = itertools.count()


def _role() -> str:
    # A role of its own per test: pools never see people made by other tests.
    return f"csm-{next(_roles)}"


def _open_tasks(session, owner, account, count, now):
    for n in range(count):
        session.add(models.Task(account_id=account.id, owner_id=owner.id, title=f"t{n}", due_at=now))
    session.flush()


def test_the_account_owner_gets_the_task_when_available(session, clock):
    account = AccountFactory()

    chosen = resolve_assignee(session, assignment=Assignment(to="account.owner"), account=account, now=clock.now())

    assert chosen.owner == account.owner
    assert chosen.how == "account owner"


def test_round_robin_skips_inactive_and_out_of_office_people_and_rotates(session, clock):
    role = _role()
    now = clock.now()
    ann = OwnerFactory(name="Ann", role=role)
    OwnerFactory(name="Ina", role=role, active=False)
    OwnerFactory(name="Oscar", role=role, out_of_office_until=now + timedelta(days=3))
    OwnerFactory(name="Bob", role=role)
    back = OwnerFactory(name="Back", role=role, out_of_office_until=now - timedelta(hours=1))
    account = AccountFactory()
    pool = Assignment(role=role, strategy="round_robin")

    picks = []
    for minute in range(6):
        chosen = resolve_assignee(session, assignment=pool, account=account, now=now + timedelta(minutes=minute))
        picks.append(chosen.owner.name)

    assert picks == ["Ann", "Bob", "Back", "Ann", "Bob", "Back"]
    assert chosen.how == f"round robin among {role}"
    assert back.last_assigned_at == now + timedelta(minutes=5)
    assert ann.last_assigned_at == now + timedelta(minutes=3)


def test_round_robin_starts_with_the_least_recently_assigned(session, clock):
    role = _role()
    now = clock.now()
    OwnerFactory(name="Recent", role=role, last_assigned_at=now - timedelta(minutes=5))
    OwnerFactory(name="Long ago", role=role, last_assigned_at=now - timedelta(days=5))

    chosen = resolve_assignee(session, assignment=Assignment(role=role), account=AccountFactory(), now=now)

    assert chosen.owner.name == "Long ago"


def test_the_per_owner_cap_sends_the_task_to_the_next_person(session, clock):
    role = _role()
    now = clock.now()
    account = AccountFactory()
    full = OwnerFactory(name="Full", role=role, max_open_tasks=2)
    roomy = OwnerFactory(name="Roomy", role=role, max_open_tasks=2, last_assigned_at=now - timedelta(minutes=1))
    _open_tasks(session, full, account, 2, now)
    _open_tasks(session, roomy, account, 1, now)

    chosen = resolve_assignee(session, assignment=Assignment(role=role), account=account, now=now)

    assert chosen.owner == roomy


def test_done_tasks_do_not_count_against_the_cap(session, clock):
    account = AccountFactory()
    account.owner.max_open_tasks = 1
    session.add(models.Task(account_id=account.id, owner_id=account.owner.id, title="old", due_at=clock.now(),
                            status=models.TaskStatus.DONE))
    session.flush()

    chosen = resolve_assignee(session, assignment=Assignment(to="account.owner"), account=account, now=clock.now())

    assert chosen.owner == account.owner


def test_an_out_of_office_account_owner_falls_back_to_a_role(session, clock):
    role = _role()
    now = clock.now()
    owner = OwnerFactory(name="Away", out_of_office_until=now + timedelta(days=2))
    lead = OwnerFactory(name="Lead", role=role)
    account = AccountFactory(owner=owner)
    assignment = Assignment(to="account.owner", fallback=Assignment(role=role))

    chosen = resolve_assignee(session, assignment=assignment, account=account, now=now)

    assert chosen.owner == lead
    assert chosen.how.startswith(f"fallback: round robin among {role}")
    assert "Away is out of office" in chosen.how


def test_an_owner_at_capacity_falls_back_through_two_levels(session, clock):
    now = clock.now()
    manager = OwnerFactory(name="Boss", active=False)
    owner = OwnerFactory(name="Busy", max_open_tasks=0, manager=manager)
    account = AccountFactory(owner=owner)
    reserve = OwnerFactory(name="Reserve", email="reserve@acme.example")
    assignment = Assignment(to="account.owner", fallback=Assignment(
        to="owner.manager", fallback=Assignment(to="reserve@acme.example")))

    chosen = resolve_assignee(session, assignment=assignment, account=account, now=now)

    assert chosen.owner == reserve
    assert "Busy has 0 open tasks (cap 0)" in chosen.how
    assert "Boss is inactive" in chosen.how


def test_the_managers_and_deal_owners_references_resolve_to_people(session, clock):
    manager = OwnerFactory(name="Manager")
    account = AccountFactory(owner=OwnerFactory(manager=manager))
    rep = OwnerFactory(name="Rep", role="ae")
    deal = DealFactory(account=account, owner=rep)

    by_manager = resolve_assignee(session, assignment=Assignment(to="owner.manager"), account=account,
                                  now=clock.now())
    by_deal = resolve_assignee(session, assignment=Assignment(to="deal.owner"), account=account, deal=deal,
                               now=clock.now())

    assert by_manager.owner == manager
    assert by_deal.owner == rep
    assert by_deal.how == "deal owner"


def test_least_loaded_picks_the_person_with_fewest_open_tasks(session, clock):
    role = _role()
    now = clock.now()
    account = AccountFactory()
    heavy = OwnerFactory(name="Heavy", role=role)
    light = OwnerFactory(name="Light", role=role, last_assigned_at=now)
    _open_tasks(session, heavy, account, 3, now)
    _open_tasks(session, light, account, 1, now)

    chosen = resolve_assignee(session, assignment=Assignment(role=role, strategy="least_loaded"),
                              account=account, now=now)

    assert chosen.owner == light
    assert chosen.how == f"least loaded among {role}"


def test_no_assignable_person_gives_none_never_a_team(session, clock):
    role = _role()
    now = clock.now()
    OwnerFactory(role=role, active=False)
    OwnerFactory(role=role, out_of_office_until=now + timedelta(days=1))
    account = AccountFactory(owner=OwnerFactory(active=False))
    assignment = Assignment(to="account.owner", fallback=Assignment(role=role))

    assert resolve_assignee(session, assignment=assignment, account=account, now=now) is None
    assert resolve_assignee(session, assignment=Assignment(to="nobody@acme.example"), account=account,
                            now=now) is None
    assert resolve_assignee(session, assignment=Assignment(to="deal.owner"), account=account, now=now) is None


def test_a_reference_that_is_not_a_person_is_refused(session, clock):
    with pytest.raises(UnknownReference, match="the team"):
        resolve_assignee(session, assignment=Assignment(to="the team"), account=AccountFactory(), now=clock.now())


@pytest.fixture
def pg_engine(backend, fresh_database):
    """A migrated PostgreSQL database of the test's own, for workers on separate sessions."""
    if backend != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite serialises writers)")
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_two_concurrent_round_robin_picks_take_different_people_on_postgres(pg_engine, clock):
    with Session(pg_engine) as setup:
        account = models.Account(name="Acme", domain="acme.example")
        setup.add_all([account, models.Owner(email="a@acme.example", name="A", role="pool"),
                       models.Owner(email="b@acme.example", name="B", role="pool")])
        setup.commit()
        account_id = account.id
    first, second = Session(pg_engine), Session(pg_engine)
    try:
        # Fail fast instead of hanging should the pick ever wait on the other worker's lock.
        second.execute(text("SET lock_timeout = '2s'"))
        pool = Assignment(role="pool")
        one = resolve_assignee(first, assignment=pool, account=first.get(models.Account, account_id),
                               now=clock.now())
        # `first` still holds its lock: the second worker must skip that person, not wait or repeat.
        two = resolve_assignee(second, assignment=pool, account=second.get(models.Account, account_id),
                               now=clock.now())
        assert {one.owner.email, two.owner.email} == {"a@acme.example", "b@acme.example"}
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_a_pool_whose_only_free_person_is_held_elsewhere_is_busy_and_one_held_but_full_is_nobody(
        pg_engine, clock):
    from orchestrator.db import RowBusy

    with Session(pg_engine) as setup:
        account = models.Account(name="Acme", domain="acme.example")
        free = models.Owner(email="free@acme.example", name="Free", role="pool")
        full = models.Owner(email="full@acme.example", name="Full", role="full-pool", max_open_tasks=1)
        setup.add_all([account, free, full])
        setup.flush()
        setup.add(models.Task(account_id=account.id, owner_id=full.id, title="t", due_at=clock.now()))
        setup.commit()
        account_id, free_id = account.id, free.id
    holder, picker = Session(pg_engine), Session(pg_engine)
    try:
        # Another worker is assigning the pool's only person, who could take the task: retry, not nobody.
        holder.execute(text("SELECT id FROM owners WHERE id = :id FOR UPDATE"), {"id": free_id})
        with pytest.raises(RowBusy, match="being assigned by another worker"):
            resolve_assignee(picker, assignment=Assignment(role="pool"),
                             account=picker.get(models.Account, account_id), now=clock.now())
        picker.rollback()
        # The pool of one person at capacity, checked under its lock: nobody, whoever else is busy.
        assert resolve_assignee(picker, assignment=Assignment(role="full-pool"),
                                account=picker.get(models.Account, account_id), now=clock.now()) is None
    finally:
        holder.close()
        picker.close()


def _counting(session, needle):
    seen: list[str] = []
    from sqlalchemy import event

    event.listen(session.connection(), "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(statement) if needle in statement else None)
    return seen


def test_a_capped_person_is_counted_once_per_transaction_until_a_task_changes(session, clock):
    now = clock.now()
    account = AccountFactory()
    capped = OwnerFactory(name="Capped", max_open_tasks=2)
    account.owner = capped
    _open_tasks(session, capped, account, 1, now)
    counts = _counting(session, "count(tasks.id)")
    ask = Assignment(to="account.owner")

    assert resolve_assignee(session, assignment=ask, account=account, now=now).owner == capped
    assert resolve_assignee(session, assignment=ask, account=account, now=now).owner == capped
    assert len(counts) == 1  # nothing changed: the count under the lock still holds

    # The second task, not yet flushed: the cap is reached, and the next check counts afresh.
    session.add(models.Task(account_id=account.id, owner_id=capped.id, title="second", due_at=now))
    assert resolve_assignee(session, assignment=ask, account=account, now=now) is None
    assert len(counts) == 2

    # Closing one (an attribute change) frees a slot again.
    session.flush()
    task = session.scalars(select(models.Task).where(models.Task.title == "second")).one()
    task.status = "done"
    assert resolve_assignee(session, assignment=ask, account=account, now=now).owner == capped
    assert len(counts) == 3

    # A statement that writes tasks directly: counted afresh again.
    session.execute(update(models.Task).where(models.Task.id == task.id).values(status="open"))
    assert resolve_assignee(session, assignment=ask, account=account, now=now) is None
    assert len(counts) == 4


def test_a_savepoint_that_rolls_back_makes_the_next_check_count_again(session, clock):
    now = clock.now()
    account = AccountFactory()
    capped = OwnerFactory(name="Capped", max_open_tasks=1)
    account.owner = capped
    counts = _counting(session, "count(tasks.id)")
    ask = Assignment(to="account.owner")

    with session.begin_nested() as savepoint:
        assert resolve_assignee(session, assignment=ask, account=account, now=now).owner == capped
        savepoint.rollback()
    assert resolve_assignee(session, assignment=ask, account=account, now=now).owner == capped
    assert len(counts) == 2


@pytest.mark.postgres
def test_a_row_lock_this_transaction_holds_is_not_asked_for_again_until_a_savepoint_rolls_back(pg_engine, clock):
    with Session(pg_engine) as setup:
        account = models.Account(name="Acme", domain="acme.example")
        owner = models.Owner(email="capped@acme.example", name="Capped", role="csm", max_open_tasks=3)
        account.owner = owner
        setup.add_all([account, owner])
        setup.commit()
        account_id, owner_id = account.id, owner.id
    worker, other = Session(pg_engine), Session(pg_engine)
    try:
        locks = _counting(worker, "FOR UPDATE")
        ask = Assignment(to="account.owner")
        mine = worker.get(models.Account, account_id)
        assert resolve_assignee(worker, assignment=ask, account=mine, now=clock.now()).owner.id == owner_id
        assert resolve_assignee(worker, assignment=ask, account=mine, now=clock.now()).owner.id == owner_id
        assert len(locks) == 1
        # Still held: another worker skips the row.
        assert other.execute(text("SELECT id FROM owners WHERE id = :id FOR UPDATE SKIP LOCKED"),
                             {"id": owner_id}).all() == []
        other.rollback()

        savepoint = worker.begin_nested()
        resolve_assignee(worker, assignment=ask, account=mine, now=clock.now())
        savepoint.rollback()
        assert len(locks) == 1  # held from before the savepoint, so not asked inside it
        resolve_assignee(worker, assignment=ask, account=mine, now=clock.now())
        assert len(locks) == 2  # after a rollback the lock is asked for again
    finally:
        worker.close()
        other.close()


def test_a_full_pool_is_ranked_once_for_a_burst_and_afresh_once_a_task_frees_a_place(session, clock):
    role = _role()
    now = clock.now()
    account = AccountFactory()
    people = [OwnerFactory(name=f"Full {n}", role=role, max_open_tasks=1) for n in range(3)]
    for person in people:
        _open_tasks(session, person, account, 1, now)
    rankings = _counting(session, "ORDER BY")
    pool = Assignment(role=role, strategy="least_loaded")

    assert [resolve_assignee(session, assignment=pool, account=account, now=now) for _ in range(4)] == [None] * 4
    assert len(rankings) == 1  # nobody changed: the pool's ranking still holds

    task = session.scalars(select(models.Task).where(models.Task.owner_id == people[1].id)).one()
    task.status = "done"
    chosen = resolve_assignee(session, assignment=pool, account=account, now=now)
    assert chosen.owner == people[1] and len(rankings) == 2


def test_round_robin_rotates_within_one_transaction(session, clock):
    role = _role()
    now = clock.now()
    account = AccountFactory()
    first, second = OwnerFactory(name="First", role=role), OwnerFactory(name="Second", role=role)
    pool = Assignment(role=role)

    # One pass, one `now`: each pick changes who is next, so the ranking is asked afresh.
    picks = [resolve_assignee(session, assignment=pool, account=account, now=now).owner for _ in range(3)]

    assert picks == [first, second, first]
