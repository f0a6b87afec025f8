// What Poolkeeper's identity may do on one pool's scale set, assigned at the scale set itself:
// the scale set role, run command only where the pool's jobs need it, and Monitoring Reader for
// its metrics. The roles are scale-set-roles.bicep's, defined in the same resource group.

targetScope = 'resourceGroup'

@description('Object id of Poolkeeper\'s managed identity.')
param principalId string

@description('The pool\'s scale set, in this resource group.')
param scaleSetName string

@description('The pool\'s patch.mode (docs/patching.md): updates installs them with run command; reboot_only does not.')
param patchMode string

@description('Whether image jobs are on (main.bicep imageJobs): a donor\'s clean-up runs a command on it.')
param imageJobs bool

var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
var scaleSetRole = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, 'Poolkeeper scale set'))
var runCommandRole = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, 'Poolkeeper run command'))
var needsRunCommand = imageJobs || patchMode != 'reboot_only'

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-07-01' existing = {
  name: scaleSetName
}

resource scaleSet 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vmss.id, principalId, scaleSetRole)
  scope: vmss
  properties: {
    roleDefinitionId: scaleSetRole
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource runCommand 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (needsRunCommand) {
  name: guid(vmss.id, principalId, runCommandRole)
  scope: vmss
  properties: {
    roleDefinitionId: runCommandRole
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metrics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vmss.id, principalId, monitoringReader)
  scope: vmss
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
