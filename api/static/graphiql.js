// Starts GraphiQL on the element #graphiql. Its data-endpoint attribute is the path of the
// GraphQL endpoint; subscriptions use graphql-transport-ws on the same path. The JSON of the
// Headers tab is sent with each HTTP request and as the connection_init payload of the
// websocket, where the server reads "Authorization".
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var endpoint = new URL(root.dataset.endpoint, window.location.href);
  var socket = new URL(endpoint.href);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  var fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: socket.href,
  });
  var explorer = GraphiQLPluginExplorer.explorerPlugin();

  var app = React.createElement(GraphiQL, {
    fetcher: fetcher,
    plugins: [explorer],
    defaultHeaders: '{\n  "Authorization": "Bearer <token>"\n}',
    shouldPersistHeaders: true,
    defaultEditorToolsVisibility: "headers",
  });
  ReactDOM.createRoot(root).render(app);
})();
