// Boots GraphiQL against this server: queries and mutations over POST /graphql, subscriptions
// over WebSocket (graphql-transport-ws) on the same path. A token saved by the booking page
// (localStorage "boxoffice.token") is sent along, so the IDE acts as the signed-in user.
(function () {
  const http = location.origin + '/graphql';
  const ws = http.replace(/^http/, 'ws');
  const token = localStorage.getItem('boxoffice.token');
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const wsClient = graphqlWs.createClient({
    url: ws,
    lazy: true,
    connectionParams: () => (token ? { Authorization: 'Bearer ' + token } : {}),
  });
  const fetcher = GraphiQL.createFetcher({ url: http, headers, wsClient });
  const defaultQuery = [
    '# Welcome to boxoffice. Try:',
    'query UpcomingShows {',
    '  shows(first: 5) {',
    '    edges { node { id startsAt movie { title } screen { name venue { name city } }',
    '      totalSeats availableSeats heldSeats bookedSeats } }',
    '    pageInfo { hasNextPage endCursor }',
    '  }',
    '}',
    '',
  ].join('\n');
  const root = ReactDOM.createRoot(document.getElementById('ide'));
  root.render(React.createElement(GraphiQL, { fetcher, defaultQuery, defaultEditorToolsVisibility: true }));
})();
