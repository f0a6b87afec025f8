// What Poolkeeper's identity may do on one pool's scale set, assigned at the scale set itself:
// the scale set role, run command only with patch or image jobs on, and Monitoring Reader for
// its metrics. The roles are scale-set-roles.bicep's, defined in the same resource group.

targetScope = 'resourceGroup'

@description('Object id of Poolkeeper\'s managed identity.')
param principalId string

@description('The pool\'s scale set, in this resource group.')
param scaleSetName string

@description('Whether patch jobs are on (main.bicep patchJobs): their node check and installs run commands.')
param patchJobs bool

@description('Whether image jobs are on (main.bicep imageJobs): a donor\'s clean-up runs a command on it.')
param imageJobs bool

var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
// The ids scale-set-roles.bicep gives its roles: from the group's id lower-cased, since a pools
// file may spell a group's name in another case than the deployment that defined them.
var group = toLower(resourceGroup().id)
var scaleSetRole = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(group, 'Poolkeeper scale set'))
var runCommandRole = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(group, 'Poolkeeper run command'))
var needsRunCommand = patchJobs || imageJobs
var target = toLower(vmss.id)

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-07-01' existing = {
  name: scaleSetName
}

resource scaleSet 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(target, principalId, scaleSetRole)
  scope: vmss
  properties: {
    roleDefinitionId: scaleSetRole
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource runCommand 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (needsRunCommand) {
  name: guid(target, principalId, runCommandRole)
  scope: vmss
  properties: {
    roleDefinitionId: runCommandRole
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metrics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(target, principalId, monitoringReader)
  scope: vmss
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
