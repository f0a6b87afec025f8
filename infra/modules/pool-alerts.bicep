// Azure Monitor metric alert rules for one pool's P1/P2 conditions (docs/alerts.md), on its scale
// set's platform metrics, each calling Poolkeeper's webhook through the action group. The rules
// are shared/alerts.py's RULES; tests/unit/test_alert_rules.py holds them equal.

targetScope = 'resourceGroup'

@description('The pool\'s name (the rules are named poolkeeper-<pool>-<rule>).')
param pool string

@description('The pool\'s scale set: the rules\' scope.')
param vmssId string

@description('The pool\'s thresholds in percent used: p1_cpu, p1_memory, p2_cpu, p2_memory.')
param thresholds object

@description('The action group that calls POST /api/alerts.')
param actionGroupId string

// Azure reports memory as percent free ("Available Memory Percentage"), so a memory rule fires
// below 100 minus the threshold (whole percentages: Bicep subtracts integers only). Node rules are
// split per VM: one alert per instance.
var cpu = 'Percentage CPU'
var memoryFree = 'Available Memory Percentage'
var perVm = [ { name: 'VMName', operator: 'Include', values: [ '*' ] } ]
var rules = [
  { name: 'p1-node-cpu', metric: cpu, operator: 'GreaterThan', threshold: thresholds.p1_cpu, dimensions: perVm, window: 'PT1H', frequency: 'PT5M', severity: 1 }
  { name: 'p1-node-memory', metric: memoryFree, operator: 'LessThan', threshold: 100 - thresholds.p1_memory, dimensions: perVm, window: 'PT1H', frequency: 'PT5M', severity: 1 }
  { name: 'p1-group-cpu', metric: cpu, operator: 'GreaterThan', threshold: thresholds.p1_cpu, dimensions: [], window: 'PT1H', frequency: 'PT5M', severity: 1 }
  { name: 'p1-group-memory', metric: memoryFree, operator: 'LessThan', threshold: 100 - thresholds.p1_memory, dimensions: [], window: 'PT1H', frequency: 'PT5M', severity: 1 }
  { name: 'p2-group-cpu', metric: cpu, operator: 'GreaterThan', threshold: thresholds.p2_cpu, dimensions: [], window: 'PT24H', frequency: 'PT1H', severity: 3 }
  { name: 'p2-group-memory', metric: memoryFree, operator: 'LessThan', threshold: 100 - thresholds.p2_memory, dimensions: [], window: 'PT24H', frequency: 'PT1H', severity: 3 }
]

resource alerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for rule in rules: {
  name: 'poolkeeper-${pool}-${rule.name}'
  location: 'global'
  properties: {
    description: 'Poolkeeper ${rule.name} for pool ${pool} (docs/alerts.md)'
    severity: rule.severity
    enabled: true
    scopes: [ vmssId ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    autoMitigate: true // a resolved alert tells Poolkeeper the episode is over
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: rule.name
          metricNamespace: 'Microsoft.Compute/virtualMachineScaleSets'
          metricName: rule.metric
          operator: rule.operator
          threshold: rule.threshold
          timeAggregation: 'Average'
          dimensions: rule.dimensions
        }
      ]
    }
    actions: [ { actionGroupId: actionGroupId } ]
  }
}]
