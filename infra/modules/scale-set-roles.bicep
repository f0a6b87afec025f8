// The custom roles Poolkeeper's identity holds on each scale set of a pool in this resource group:
// defined here (assignable in this group only), assigned by scale-set-access.bicep at each scale
// set, never at the group.

targetScope = 'resourceGroup'

@description('The scale set role\'s actions (main.bicep scaleSetActions).')
param scaleSetActions array

@description('The run command role\'s actions (main.bicep runCommandActions).')
param runCommandActions array

var suffix = '(${resourceGroup().name}, ${subscription().subscriptionId})'

resource scaleSet 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(toLower(resourceGroup().id), 'Poolkeeper scale set')
  properties: {
    roleName: 'Poolkeeper scale set ${suffix}'
    description: 'Scale, drain, patch, repair and image jobs on one scale set: capacity up and the image reference (with If-Match), named deletes, restarts, reimages, stop and start, roll to the model.'
    type: 'CustomRole'
    permissions: [ { actions: scaleSetActions, notActions: [] } ]
    assignableScopes: [ resourceGroup().id ]
  }
}

resource runCommand 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(toLower(resourceGroup().id), 'Poolkeeper run command')
  properties: {
    roleName: 'Poolkeeper run command ${suffix}'
    description: 'Patch installs and an image donor\'s clean-up: run command on the instances of one scale set.'
    type: 'CustomRole'
    permissions: [ { actions: runCommandActions, notActions: [] } ]
    assignableScopes: [ resourceGroup().id ]
  }
}
