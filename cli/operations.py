"""GraphQL documents the command line sends."""

TASK_FIELDS = """
  id accountId accountLabel months status phase percent processed total attempts
  createdAt startedAt finishedAt
  error { code message retryable }
  summary { messages newsletters flagged findings { kind count } topSenders { address messages } }
"""

ACCOUNTS = "query { accounts { id label host port security username folders createdAt } }"

HISTORY = f"""
query History($first: Int!, $after: String, $status: [ScanStatus!], $accountId: ID) {{
  taskHistory(first: $first, after: $after, status: $status, accountId: $accountId) {{
    edges {{ node {{ {TASK_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

TASK = f"query Task($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"

START_SCAN = f"""
mutation Start($accountId: ID!, $months: Int!) {{
  startScan(accountId: $accountId, months: $months) {{
    __typename
    ... on StartScanSuccess {{ task {{ {TASK_FIELDS} }} }}
    ... on InvalidInput {{ code message field }}
    ... on NotFound {{ code message }}
    ... on ScanAlreadyRunning {{ code message taskId }}
    ... on QuotaExceeded {{ code message retryAfterSeconds }}
    ... on InvalidState {{ code message }}
  }}
}}
"""

CANCEL_SCAN = f"""
mutation Cancel($taskId: ID!) {{
  cancelScan(taskId: $taskId) {{
    __typename
    ... on CancelScanSuccess {{ task {{ {TASK_FIELDS} }} }}
    ... on NotFound {{ code message }}
    ... on InvalidState {{ code message }}
  }}
}}
"""

SCAN_PROGRESS = """
subscription Progress($taskId: ID!) {
  scanProgress(taskId: $taskId) {
    taskId status phase percent processed total etaSeconds messagesPerSecond sequence message
  }
}
"""
