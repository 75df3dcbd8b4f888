//! `ferrum availability` and `ferrum calendar`: read-only views of the
//! reservation calendar.

use anyhow::Result;
use ferrum_api::{Availability, AvailabilityQuery, Calendar, CalendarQuery};

use super::Ctx;
use crate::args::{AvailabilityArgs, CalendarArgs};
use crate::render;
use crate::{gantt, render::columns};

/// Chart width when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 80;

pub async fn availability(ctx: &Ctx, args: AvailabilityArgs) -> Result<()> {
    let query = AvailabilityQuery {
        count: args.count,
        filter: args.filter,
        duration: args.duration,
        from: args.from,
        exotic: args.exotic.then_some(true),
        limit: args.limit,
    };
    let answer = ctx.client.get::<Availability, _>(&["availability"], &query).await.map_err(crate::flags::name_flags)?;
    ctx.show(&answer, render::availability_table)
}

pub async fn calendar(ctx: &Ctx, args: CalendarArgs) -> Result<()> {
    let query = CalendarQuery { from: args.from, to: args.to, filter: args.filter };
    let answer = ctx.client.get::<Calendar, _>(&["calendar"], &query).await?;
    let width = columns().unwrap_or(DEFAULT_WIDTH);
    ctx.show(&answer, |cal, _| gantt::render(cal, width))
}
