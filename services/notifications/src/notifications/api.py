"""Routes of the notifications service: parse, authorise, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from notifications import service
from notifications.domain.delivery import DeliveryStatus
from notifications.schemas import (
    NotificationPublic,
    NotificationsPublic,
    SubjectAccessPublic,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    SubscriptionsPublic,
)
from notifications.transports import resolve_host
from pathways_shared.access import Purpose
from pathways_shared.auth import Principal, require_roles
from pathways_shared.db import SessionDep
from pathways_shared.inputs import CrnQuery
from pathways_shared.pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from pathways_shared.vocabulary import Role

router = APIRouter()

Subscriber = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.POLICE))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
SubjectAccessAdmin = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, national="a subject access request"))
]
# Notifications carry no area: the delivery log spans every area, so a national token only.
LogReader = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, Role.SERVICE, national="the delivery log"))
]


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    tags=["subscriptions"],
)
async def create_subscription(
    body: SubscriptionCreate,
    principal: Subscriber,
    session: SessionDep,
    request: Request,
    response: Response,
) -> SubscriptionCreated:
    created = await service.create_subscription(
        session, principal, body, settings=request.app.state.settings, resolver=resolve_host
    )
    response.headers["Location"] = f"/subscriptions/{created.id}"
    return created


@router.get("/subscriptions", response_model=SubscriptionsPublic, tags=["subscriptions"])
async def list_subscriptions(
    principal: Subscriber,
    session: SessionDep,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> SubscriptionsPublic:
    return await service.list_subscriptions(session, principal, limit=limit, cursor=cursor)


@router.get(
    "/subscriptions/{subscription_id}", response_model=SubscriptionPublic, tags=["subscriptions"]
)
async def get_subscription(
    subscription_id: uuid.UUID, principal: Subscriber, session: SessionDep
) -> SubscriptionPublic:
    return await service.get_subscription(session, principal, subscription_id)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["subscriptions"],
)
async def delete_subscription(
    subscription_id: uuid.UUID, principal: Subscriber, session: SessionDep
) -> Response:
    await service.delete_subscription(session, principal, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/subscriptions/{subscription_id}/enable",
    response_model=SubscriptionPublic,
    tags=["subscriptions"],
)
async def enable_subscription(
    subscription_id: uuid.UUID, principal: Admin, session: SessionDep
) -> SubscriptionPublic:
    return await service.enable_subscription(session, principal, subscription_id)


@router.get("/notifications", response_model=NotificationsPublic, tags=["delivery log"])
async def list_notifications(
    principal: LogReader,
    session: SessionDep,
    referral_id: uuid.UUID | None = None,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
    purpose: Purpose = None,
) -> NotificationsPublic:
    return await service.list_notifications(
        session, principal, referral_id=referral_id, status=status_, limit=limit, cursor=cursor,
        purpose=purpose or "delivery log read",
    )


@router.get(
    "/notifications/{notification_id}", response_model=NotificationPublic, tags=["delivery log"]
)
async def get_notification(
    notification_id: uuid.UUID, principal: LogReader, session: SessionDep, purpose: Purpose = None
) -> NotificationPublic:
    return await service.get_notification(
        session, principal, notification_id, purpose=purpose or "delivery log read"
    )


@router.get(
    "/subject-access-requests", response_model=SubjectAccessPublic, tags=["data protection"]
)
async def subject_access_request(
    request: Request,
    principal: SubjectAccessAdmin,
    session: SessionDep,
    crn: CrnQuery,
) -> SubjectAccessPublic:
    return await service.subject_access(session, principal, crn, request.app.state.settings)
