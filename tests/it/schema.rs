//! `schema.graphql` is generated from the code: this fails when the committed file is stale.
//! Regenerate with `cargo run -- export-schema -o schema.graphql`.
#[test]
fn schema_graphql_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = boxoffice::graphql::sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -- export-schema -o schema.graphql` and commit it"
    );
}

#[test]
fn schema_has_the_contract() {
    let sdl = boxoffice::graphql::sdl();
    for needle in [
        "shows(first: Int = 20, after: String",
        "show(id: ID!): Show",
        "me: User",
        "myBookings: [Booking!]!",
        "booking(id: ID!): Booking",
        "signUp(email: String!, password: String!, name: String): AuthPayload!",
        "logIn(email: String!, password: String!): AuthPayload!",
        "createVenue(name: String!, city: String!): Venue!",
        // Extended with an optional argument (the contract allows more arguments with defaults).
        "createScreen(venueId: ID!, name: String!, rows: [SeatRowInput!]!",
        "createMovie(title: String!, durationMinutes: Int!): Movie!",
        "createShow(movieId: ID!, screenId: ID!, startsAt: DateTime!, prices: [CategoryPriceInput!]!): Show!",
        "enum SeatStatus",
        "enum BookingStatus",
        // Additions (second wave).
        "holdBestAvailable(showId: ID!, count: Int!, categories: [String!], requireTogether: Boolean! = false, wheelchairSpaces: Int! = 0): Hold!",
        "nextToEachOther: Boolean!",
        "wheelchair: Boolean!",
        "companion: Boolean!",
        "restrictedView: Boolean!",
        "setOnSale(showId: ID!, opensAt: DateTime!, admitPerMinute: Int!, sessionMinutes: Int!, queueEnabled: Boolean!",
        "joinQueue(showId: ID!): QueueTicket!",
        "createApiKey(name: String!, scopes: [ApiScope!]!): CreatedApiKey!",
        "revokeApiKey(id: ID!): Boolean!",
        "createWebhook(url: String!, events: [String!]!): CreatedWebhook!",
        // Extended with an optional period (the contract allows more arguments with defaults).
        "salesReport(showId: ID!",
        "auditLog(first: Int = 50, after: String, showId: ID, bookingId: ID, userId: ID, kind: String",
        "queueTicket(showId: ID!): QueueTicket",
        "queueUpdates(showId: ID!): QueueTicket!",
        "enum QueueState",
        "estimatedWaitSeconds: Int",
        "admittedUntil: DateTime",
    ] {
        assert!(sdl.contains(needle), "schema lacks `{needle}`");
    }
}
